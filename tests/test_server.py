"""Serving on Ray Serve: the real app, deployed by `tracker.server.run`, over real HTTP."""

from __future__ import annotations

import select
import socket
import time
import uuid

import httpx
import pytest
from conftest import free_port
from ray.serve import Application

import serve_app
from tracker import server
from tracker.config import Config
from tracker.errors import ConfigError


def test_healthz_answers_200_over_http_through_serve(serve_tracker: str) -> None:
    response = httpx.get(f"{serve_tracker}/healthz", timeout=10)
    assert response.status_code == 200


def test_a_visitor_session_and_its_events_round_trip_through_serve(serve_tracker: str) -> None:
    user_id, session_id = str(uuid.uuid4()), "s1"
    with httpx.Client(base_url=serve_tracker, timeout=30) as client:
        created = client.post(
            "/api/track/session",
            json={"userId": user_id, "sessionId": session_id, "deviceInfo": {"userAgent": "t"}},
        )
        assert created.status_code == 200, created.text
        event = {
            "userId": user_id,
            "sessionId": session_id,
            "timestamp": int(time.time() * 1000),
            "event": "click",
            "data": {"path": "/", "element": "button#buy", "coordinates": {"x": 3, "y": 4}},
        }
        tracked = client.post("/api/track", json=event)
        assert tracked.status_code == 200, tracked.text
        assert tracked.json() == {"success": True, "accepted": 1}
        session = client.get(
            "/api/track/session", params={"userId": user_id, "sessionId": session_id}
        )
        assert session.status_code == 200, session.text
        assert [m["event"] for m in session.json()["movements"]] == ["click"]


def test_the_server_listens_on_loopback_only(serve_tracker: str, serve_config: Config) -> None:
    import ray

    outside: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    if outside.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((outside, serve_config.http_port), timeout=5).close()


# How long past the header timeout the server may take to close, on a loaded machine.
CLOSE_SLACK_S = 10.0


def _answer_until_closed(sock: socket.socket, trickle: bytes, limit_s: float) -> bytes:
    """Send `trickle` a byte every half second (nothing, if empty) until the server closes
    the connection, and return what it answered; fail if it has not closed within `limit_s`."""
    deadline = time.monotonic() + limit_s
    answer = b""
    left = iter(trickle)
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.5)
        try:
            if readable:
                data = sock.recv(4096)
                if not data:
                    return answer
                answer += data
            elif (byte := next(left, None)) is not None:
                sock.sendall(bytes([byte]))
        except (ConnectionResetError, BrokenPipeError):
            return answer
    raise AssertionError(f"the connection was still open after {limit_s} s")


def _get_healthz(sock: socket.socket) -> None:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tracker\r\n\r\n")
    answer = b""
    sock.settimeout(30)
    while b'{"status":"ok"}' not in answer:
        data = sock.recv(4096)
        assert data, answer
        answer += data


@pytest.mark.parametrize("connection", ["new", "kept alive"])
def test_a_client_trickling_its_request_headers_is_cut_off_after_the_header_timeout(
    serve_tracker: str, serve_config: Config, connection: str
) -> None:
    """uvicorn bounds neither: a connection trickling its headers would be held for ever."""
    timeout_s = serve_config.header_timeout_s
    with socket.create_connection(("127.0.0.1", serve_config.http_port), timeout=30) as sock:
        if connection == "kept alive":
            _get_healthz(sock)
            # Idle between requests is the keep-alive timeout's to end, not this one's.
            assert select.select([sock], [], [], timeout_s + 1)[0] == []
        started = time.monotonic()
        trickle = b"GET /healthz HTTP/1.1\r\nHost: tracker\r\nX-Slow: " + b"a" * 200
        answer = _answer_until_closed(sock, trickle, timeout_s + CLOSE_SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started >= timeout_s - 0.5


def test_a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout(
    serve_tracker: str, serve_config: Config
) -> None:
    with socket.create_connection(("127.0.0.1", serve_config.http_port), timeout=30) as sock:
        answer = _answer_until_closed(sock, b"", serve_config.header_timeout_s + CLOSE_SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_port_another_program_listens_on_is_refused_at_once() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"TRACKER_HTTP_PORT={port}"):
            server.run(Config(http_port=port), block=False)
        assert time.monotonic() - started < 5


def test_serves_direct_ingress_range_is_exactly_the_public_port() -> None:
    env = server.serve_env(Config(http_port=8123), {})
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    # The upper bound is exclusive: one port, which the one replica takes.
    assert (
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"],
    ) == ("8123", "8124")


def test_serve_switches_already_in_the_environment_win() -> None:
    env = server.serve_env(Config(), {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"})
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"


def test_a_ray_started_here_exports_no_ray_metrics_unless_the_environment_says() -> None:
    assert server.local_ray_env({}) == {"RAY_enable_metrics_collection": "0"}
    assert server.local_ray_env({"RAY_enable_metrics_collection": "1"}) == {}


def test_base_urls_name_an_address_this_machine_can_connect_to() -> None:
    port = free_port()
    assert (
        server.base_url(Config(http_host="0.0.0.0", http_port=port)) == f"http://127.0.0.1:{port}"
    )
    assert server.base_url(Config(http_host="::1", http_port=port)) == f"http://[::1]:{port}"


def test_the_app_builder_takes_config_fields_as_arguments() -> None:
    app = serve_app.build({"storage": "file:///srv/tracker", "rate_limit": "0"})
    assert isinstance(app, Application)
    with pytest.raises(ConfigError, match="rate_limt"):
        serve_app.build({"rate_limt": "0"})
