"""``python -m immich_ml.server.healthcheck``: the container HEALTHCHECK (Immich's healthcheck.py).

GET ``/ping`` on the service's own port (``IMMICH_PORT``) with a 2 s timeout; exit 0 on
``200 pong``, 1 otherwise. A wildcard bind address is reached over loopback. Imports only the
standard library and config, so it stays cheap when run every 30 s.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from immich_ml.config import Settings, load_settings

_WILDCARDS = {"", "0.0.0.0", "::"}


def ping_url(settings: Settings) -> str:
    host = settings.bind_host
    if host in _WILDCARDS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/ping"


def check(url: str, timeout: float = 2.0) -> str | None:
    """None when ``url`` answers 200 "pong", else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(64)
            if response.status == 200 and body.strip() == b"pong":
                return None
            return f"{url}: HTTP {response.status} {body[:32]!r}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def main() -> int:
    problem = check(ping_url(load_settings()))
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
