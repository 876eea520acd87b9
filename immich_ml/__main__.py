"""``python -m immich_ml``: the service (same command line as Immich's ``python -m immich_ml``)."""

from __future__ import annotations

import sys


def main() -> int:
    # Imported here: worker processes are spawned, and the spawn start method re-imports this
    # module in each worker, which must not pull in the HTTP stack.
    from immich_ml.server.run import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
