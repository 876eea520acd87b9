"""Listening sockets and start-up of the service entry point."""

from __future__ import annotations

import socket

import pytest

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
    assert run.main() == 2
    assert "MACHINE_LEARNING_WORKERS" in capsys.readouterr().err
