# Sourced by scripts/wheels.sh and docker/test-image.sh: timed steps with a log line each.
#   STEP_PREFIX=name STEP_TIMES=file; step "what" command args...
# The command's wall time is appended to $STEP_TIMES ("FAILED (exit N)" when it fails) and its
# exit status returned.

log() { echo "[$STEP_PREFIX] $*" >&2; }

step() {
  local name=$1 start rc=0
  shift
  log "$name ..."
  start=$(date +%s%N)
  "$@" || rc=$?
  awk -v n="$name" -v ns="$(( $(date +%s%N) - start ))" -v rc=$rc \
    'BEGIN { printf "%-40s %8.1f s%s\n", n, ns / 1e9, rc ? "  FAILED (exit " rc ")" : "" }' | tee -a "$STEP_TIMES" >&2
  return $rc
}
