#!/bin/sh
# Container entrypoint (under tini): run the service as IMMICH_ML_RUN_AS (uid:gid) when the image
# sets it and the container started as root; root otherwise (GPU/NPU device nodes).
#
# Model caches written by Immich's own image (root-owned /cache volume) are handed to that user
# once, so replacing the image needs no manual chown.
set -eu
if [ "$(id -u)" = 0 ] && [ -n "${IMMICH_ML_RUN_AS:-}" ]; then
  cache=${MACHINE_LEARNING_CACHE_FOLDER:-/cache}
  mkdir -p "$cache"
  if [ "$(stat -c %u:%g "$cache")" != "$IMMICH_ML_RUN_AS" ]; then
    chown -R "$IMMICH_ML_RUN_AS" "$cache"
  fi
  exec setpriv --reuid="${IMMICH_ML_RUN_AS%%:*}" --regid="${IMMICH_ML_RUN_AS##*:}" --clear-groups -- "$@"
fi
exec "$@"
