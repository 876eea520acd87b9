"""``python -m immich_ml``: read settings, start the worker pool, serve HTTP with waitress.

The listening socket is bound before any worker starts (a port conflict fails at once) and
``/ping`` answers from the first moment, while workers load; ``/ready`` turns 200 once every
worker slot passed its self-test. ``IMMICH_HOST=[::]`` (the default) binds one dual-stack socket,
so IPv4 clients reach it too. SIGTERM and SIGINT stop the server, then the workers.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import waitress
import waitress.server

import immich_ml
from immich_ml.config import Settings, load_settings
from immich_ml.errors import SettingsError
from immich_ml.server.app import create_app
from immich_ml.server.http_channel import use_json_errors
from immich_ml.workers import routing
from immich_ml.workers.logs import configure_logging
from immich_ml.workers.pool import WorkerPool
from immich_ml.workers.protocol import PIPELINE_FACTORY

log = logging.getLogger("immich_ml.server")


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for ``host:port``.

    ``host`` is an IP literal without brackets or a name. The IPv6 wildcard ``::`` gets one
    dual-stack socket (``IPV6_V6ONLY`` off), which also accepts IPv4 clients as mapped addresses.
    A name binds every address it resolves to.
    """
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [_bind(family, host, port, dual_stack=literal.version == 6 and literal.is_unspecified)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: set[tuple[int, str]] = set()
    sockets = []
    for family, _, _, _, address in infos:
        key = (int(family), str(address[0]))
        if key not in seen:
            seen.add(key)
            sockets.append(_bind(family, str(address[0]), port, dual_stack=False))
    return sockets


def _bind(family: socket.AddressFamily, host: str, port: int, *, dual_stack: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def waitress_threads(settings: Settings) -> int:
    """HTTP threads: each waits on one request while a worker runs it."""
    return max(settings.request_threads, 8)


def _log_start(settings: Settings) -> None:
    source = f" ({settings.source_ref})" if settings.source_ref else ""
    log.info("Starting immich_ml %s%s", immich_ml.__version__, source)
    plans = routing.device_slots(settings)
    log.info(
        "Settings: device=%s device_ids=%s workers=%d request_threads=%d queue_depth=%d "
        "model_ttl=%d s worker_timeout=%d s cache=%s",
        settings.device, ",".join(settings.device_ids), settings.workers,
        max(1, settings.request_threads), settings.queue_depth, settings.model_ttl,
        settings.worker_timeout, settings.cache_folder,
    )
    slots = ", ".join(f"worker {p.index} -> {p.kind}:{p.device_id}" for p in plans)
    placed = sorted("/".join(pair) for pair in routing.cpu_placed(settings))
    pinned = sorted(f"{'/'.join(pair)} on device {where}" for pair, where in routing.device_placed(settings).items())
    log.info(
        "Worker slots: %s%s%s", slots,
        f"; placed on CPU workers: {', '.join(placed)}" if placed else "",
        f"; pinned: {', '.join(pinned)}" if pinned else "",
    )


def serve(settings: Settings, *, pipeline_factory: str = PIPELINE_FACTORY) -> None:
    """Run the service until SIGTERM/SIGINT; returns after workers have stopped."""
    _log_start(settings)
    sockets = bind_sockets(settings.bind_host, settings.port)
    pool = WorkerPool(settings, pipeline_factory=pipeline_factory)
    pool.start()
    try:
        app = create_app(settings, pool)
        server = waitress.create_server(
            app,
            sockets=sockets,
            threads=waitress_threads(settings),
            ident="immich_ml",
            # Waitress buffers the whole body before the app sees it, so an oversized body is
            # refused by waitress from its Content-Length, before it is read (it refuses at
            # >= this size); http_channel makes that answer JSON and readable.
            max_request_body_size=settings.max_request_bytes + 1,
            # Bodies up to this size stay in memory instead of a temporary file (photo previews
            # Immich sends are well below it).
            inbuf_overflow=min(settings.max_request_bytes, 4 * 2**20),
            # Read uploads in large slices: waitress's default 8 KB costs ~100 trips through its
            # event loop for one photo.
            recv_bytes=256 * 1024,
            # Answers go out from the request thread as soon as they are written: below this
            # many bytes waitress leaves them to its event-loop thread, one more thread wake-up
            # (~0.1 ms, more on a busy host) per search query (benchmarks/README.md).
            send_bytes=1,
            # Clients that keep connections alive (Node's undici: 4 s) must not race our close.
            channel_timeout=max(settings.http_keepalive_timeout_s, 10),
        )
        use_json_errors(server)
        for sock in sockets:
            address = sock.getsockname()
            where = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
            stack = " (IPv4 and IPv6)" if sock.family == socket.AF_INET6 and address[0] == "::" else ""
            log.info("Listening on http://%s:%d%s", where, address[1], stack)
        _run_until_signal(server)
    finally:
        pool.close()
        for sock in sockets:
            sock.close()


def _run_until_signal(server: waitress.server.BaseWSGIServer | waitress.server.MultiSocketServer) -> None:
    """Serve on a background thread until SIGTERM/SIGINT, then close the server.

    The signal handlers only set an event: raising from a handler (the usual way out of
    waitress's loop) is swallowed when the signal lands inside waitress's channel code, which
    left ``docker stop`` waiting for its SIGKILL.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def serve_forever() -> None:
        try:
            server.run()
        except Exception:  # noqa: BLE001 - a dead HTTP loop must stop the service, not hang it
            log.exception("HTTP server loop failed")
        finally:
            stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=serve_forever, name="http", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
        log.info("Shutting down")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        thread.join(2)


def argument_parser() -> argparse.ArgumentParser:
    """The command line: only ``--help`` and ``--version``; every setting is an environment
    variable, as in Immich (read by :mod:`immich_ml.config`)."""
    parser = argparse.ArgumentParser(
        prog="python -m immich_ml",
        description=(
            "Immich machine-learning service (drop-in replacement). Serves Immich's /predict API "
            "on IMMICH_HOST:IMMICH_PORT (default [::]:3003)."
        ),
        epilog=(
            "Settings come from the environment, with Immich's names: MACHINE_LEARNING_* (cache "
            "folder, workers, devices, preload, TTL ...) and IMMICH_HOST, IMMICH_PORT, "
            "IMMICH_LOG_LEVEL. See README.md 'Settings'."
        ),
    )
    parser.add_argument("--version", action="version", version=f"immich_ml {immich_ml.__version__}")
    return parser


def main(argv: Sequence[str] | None = None, *, pipeline_factory: str = PIPELINE_FACTORY) -> int:
    """Console entry point; returns the process exit status.

    ``--help``/``--version`` print and exit 0; any other argument is a usage error (exit 2)
    instead of being ignored by a service that then listens on every interface.
    """
    argument_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"immich_ml: {error.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level_number)
    serve(settings, pipeline_factory=pipeline_factory)
    return 0
