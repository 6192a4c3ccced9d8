"""A client that sends half a body is answered 408 after TOLLGATE_BODY_TIMEOUT_SECONDS, in the route's format,
instead of holding the request open (issue 11: slow bodies were held 110 s+). Raw sockets against a live gateway."""
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.live

DEADLINE = 1.0


@pytest.fixture(scope="module")
def slow_gateway(gateway_factory):
    return gateway_factory(TOLLGATE_BODY_TIMEOUT_SECONDS=str(DEADLINE))


def _read_response(sock) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    headers = {k.lower(): v for k, v in headers.items()}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _half_body(server, path: str, extra_headers: str = "") -> tuple[int, dict, dict, float]:
    """Headers promising 200 bytes, then 100 of them, then silence."""
    url = urlsplit(server.url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 200\r\n{extra_headers}\r\n").encode() + b'{"model": "' + b"x" * 89)
        status, headers, body = _read_response(sock)
        closed = sock.recv(1) == b""  # and the connection is closed: the rest of the body is never read
    assert closed
    return status, headers, json.loads(body), time.monotonic() - started


def test_half_a_body_on_chat_completions_is_an_openai_408(slow_gateway):
    status, headers, body, took = _half_body(slow_gateway, "/v1/chat/completions",
                                             "Authorization: Bearer sk-tg-whatever\r\n")
    assert status == 408 and DEADLINE <= took < DEADLINE + 5
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "request_timeout"
    assert "1 seconds" in body["error"]["message"] and headers["x-request-id"].startswith("req_")


def test_half_a_body_on_messages_is_an_anthropic_408(slow_gateway):
    status, headers, body, _ = _half_body(slow_gateway, "/v1/messages?beta=true", "x-api-key: sk-tg-whatever\r\n")
    assert status == 408 and body["type"] == "error" and body["error"]["code"] == "request_timeout"
    assert headers["request-id"].startswith("req_")


def test_half_a_body_on_the_console_is_a_408_too(slow_gateway):
    status, _, body, took = _half_body(slow_gateway, "/console/login/")
    assert status == 408 and body["error"]["code"] == "request_timeout" and took < DEADLINE + 5


def test_a_body_sent_in_pieces_within_the_deadline_is_served(transactional_db, slow_gateway):
    url = urlsplit(slow_gateway.url)
    payload = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json"
                      f"\r\nAuthorization: Bearer sk-tg-not-a-key-000000000000\r\nContent-Length: {len(payload)}\r\n"
                      "\r\n").encode() + payload[:20])
        time.sleep(DEADLINE / 4)  # a slow client, not a stalled one
        sock.sendall(payload[20:])
        status, _, body = _read_response(sock)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", body  # read, then refused
