"""Listening sockets and start-up of the service entry point."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import immich_ml
from immich_ml.config import load_settings
from immich_ml.server import run


def _accepts(listener: socket.socket, family: socket.AddressFamily, host: str) -> bool:
    port = listener.getsockname()[1]
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        client.connect((host, port))
        peer, _ = listener.accept()
        peer.close()
    return True


def test_ipv6_wildcard_is_one_dual_stack_socket() -> None:
    (sock,) = run.bind_sockets("::", 0)
    with sock:
        sock.listen()
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert _accepts(sock, socket.AF_INET, "127.0.0.1")
        assert _accepts(sock, socket.AF_INET6, "::1")


def test_ipv4_literal_and_names_bind_what_they_say() -> None:
    (v4,) = run.bind_sockets("127.0.0.1", 0)
    with v4:
        v4.listen()
        assert v4.family == socket.AF_INET and _accepts(v4, socket.AF_INET, "127.0.0.1")
    named = run.bind_sockets("localhost", 0)
    try:
        assert named and all(s.getsockname()[0] in ("127.0.0.1", "::1") for s in named)
    finally:
        for sock in named:
            sock.close()


def test_port_in_use_fails_fast() -> None:
    (first,) = run.bind_sockets("127.0.0.1", 0)
    with first:
        first.listen()
        with pytest.raises(OSError):
            run.bind_sockets("127.0.0.1", first.getsockname()[1])


def test_http_threads_cover_request_threads() -> None:
    assert run.waitress_threads(load_settings({"MACHINE_LEARNING_REQUEST_THREADS": "2"})) == 8
    assert run.waitress_threads(load_settings({"MACHINE_LEARNING_REQUEST_THREADS": "24"})) == 24


def test_invalid_settings_stop_start_up_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MACHINE_LEARNING_WORKERS", "many")
    assert run.main([]) == 2
    assert "MACHINE_LEARNING_WORKERS" in capsys.readouterr().err


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # Before: every argument was ignored and the service started listening on [::]:3003;
    # the timeout turns that into a failure instead of a hang.
    return subprocess.run(
        [sys.executable, "-m", "immich_ml", *args], capture_output=True, text=True, timeout=60
    )


def test_help_and_version_print_and_exit() -> None:
    helped = _cli("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m immich_ml")
    assert "MACHINE_LEARNING_" in helped.stdout and "Listening" not in helped.stderr
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"immich_ml {immich_ml.__version__}"


def test_unknown_arguments_are_a_usage_error() -> None:
    for args in (("--port", "80"), ("serve",)):
        refused = _cli(*args)
        assert refused.returncode == 2, refused
        assert "usage: python -m immich_ml" in refused.stderr and "unrecognized arguments" in refused.stderr
