"""`rotator serve` refuses faulty input with one clear answer, never a traceback:
`Origin: null`, a deeply nested JSON body, wrongly typed fields, and one event
stream too many (against a real `rotator serve` process)."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

from rotator.service.routes import MAX_JSON_DEPTH, json_depth
from rotator.service.sse import MAX_STREAMS_PER_TOKEN, StreamSlots
from tests.test_service import PLAN_NAME, TOKEN, ServiceProc, hook, service, svc_setup  # noqa: F401 - fixtures


def test_origin_null_is_refused_like_any_cross_origin_request(service: ServiceProc) -> None:  # noqa: F811
    with service.client() as c:
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}, headers={"Origin": "null"})
        assert r.status_code == 403 and "Origin: null" in r.json()["error"], r.text
        assert c.get("/api/plans").json()["plans"][0]["armed_rotation"] is None
        same = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}, headers={"Origin": service.url})  # the page itself
        assert same.status_code == 201, same.text
        c.post(f"/api/rotations/{same.json()['id']}/close", json={})


def test_deep_json_is_a_400_without_a_traceback(service: ServiceProc) -> None:  # noqa: F811
    deep = b"[" * 20_000 + b"]" * 20_000  # 40 KB, under the body limit
    body = b'{"reason": ' + deep + b"}"
    with service.client() as c:
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and f"deeper than {MAX_JSON_DEPTH} levels" in r.json()["error"], r.text
        assert c.get("/healthz").status_code == 200
    time.sleep(0.2)
    out = service.output()
    assert "Traceback" not in out and "RecursionError" not in out


def test_json_depth_skips_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": []}]}') == 4
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 50 + b"]" * 50) == 50


def test_wrongly_typed_fields_are_a_422_naming_the_field(service: ServiceProc) -> None:  # noqa: F811
    cases: list[tuple[str, dict[str, Any], str]] = [
        (f"/api/plans/{PLAN_NAME}/arm", {"reason": 5}, "reason"),
        (f"/api/plans/{PLAN_NAME}/arm", {"operator": ["ada"]}, "operator"),
        (f"/api/plans/{PLAN_NAME}/arm", {"flow": {"x": 1}}, "flow"),
        (f"/api/plans/{PLAN_NAME}/sync", {"check": "yes"}, "check"),
        ("/api/rotations/nope/key", {"key": 12345}, "key"),
        ("/api/rotations/nope/key", {"key": "sk_test_x", "accept_unprobed": 1}, "accept_unprobed"),
    ]
    with service.client() as c:
        for path, body, field in cases:
            r = c.post(path, json=body)
            assert r.status_code == 422, (path, body, r.text)
            assert r.json()["field"] == field and r.json()["error"].startswith(f"{field} must be "), r.text
        assert c.get("/api/plans").json()["plans"][0]["armed_rotation"] is None  # nothing armed on the way
    assert "12345" not in service.output()


def _open_stream(url: str, rid: str) -> tuple[socket.socket, str]:
    """A raw event-stream request; returns the socket (left open) and the status line."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        f"GET /api/rotations/{rid}/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.split(b"\r\n", 1)[0].decode()


def test_event_streams_are_bounded_per_token(service: ServiceProc) -> None:  # noqa: F811
    with service.client() as c:
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        socks = []
        try:
            for _ in range(MAX_STREAMS_PER_TOKEN):
                sock, status = _open_stream(service.url, rid)
                socks.append(sock)
                assert " 200 " in status, status
            over = c.get(f"/api/rotations/{rid}/events")
            assert over.status_code == 429, over.text
            assert f"too many open event streams for this token ({MAX_STREAMS_PER_TOKEN})" in over.json()["error"]
            # One closes: a new one may open (once the server has seen it go).
            socks.pop().close()

            def reopened() -> bool:
                sock, status = _open_stream(service.url, rid)
                if " 200 " in status:
                    socks.append(sock)
                    return True
                sock.close()
                return False

            deadline = time.monotonic() + 20
            while not reopened():
                assert time.monotonic() < deadline, "a closed stream's slot was never given back"
                time.sleep(0.5)
            assert c.get("/healthz").status_code == 200
        finally:
            for s in socks:
                s.close()
            c.post(f"/api/rotations/{rid}/close", json={})


def test_stream_slots_bound_the_total_too() -> None:
    slots = StreamSlots(per_token=2, total=3)

    async def empty() -> Any:
        if False:
            yield b""

    a, b = StreamSlots.caller("Bearer a"), StreamSlots.caller("Bearer b")
    held = [slots.bounded(empty(), a), slots.bounded(empty(), a)]
    assert slots.refusal(a) is not None and slots.refusal(b) is None
    held.append(slots.bounded(empty(), b))
    why = slots.refusal(StreamSlots.caller("Bearer c"))
    assert why is not None and "3 in all" in why
    held.clear()  # dropped without ever starting: their slots are given back
    assert slots.open == {} and slots.refusal(a) is None
