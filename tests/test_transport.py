"""rotator.transport: httpx's API over aiohttp, against real servers on loopback.

What a plugin relies on: each failure arrives as the httpx error httpcore raised
(so `describe_error` and ``except httpx.TimeoutException`` keep their meaning),
connections are kept and replaced when a server closes them, bodies stream both
ways, httpx decodes compressed answers once, TLS is verified, and no cookie set by
one service is sent to another.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from rotator_plugins._http_confirm import describe_error

from rotator.transport import AiohttpTransport, http_client


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


class Services:
    """An aiohttp.web server with the answers the tests need, counting connections."""

    def __init__(self) -> None:
        self.peers: set[Any] = set()  # the client ends of the connections requests came on
        self.seen: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/echo", self.echo)
        self.app.router.add_get("/hang", self.hang)
        self.app.router.add_get("/drop", self.drop)
        self.app.router.add_get("/gzip", self.gzipped)
        self.app.router.add_get("/cookie", self.cookie)
        self.app.router.add_get("/stream", self.stream)

    @property
    def connections(self) -> int:
        return len(self.peers)

    async def echo(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        body = await request.read()
        seen = {"method": request.method, "headers": dict(request.headers), "body": body.decode()}
        self.seen.append(seen)
        return web.json_response(seen)

    async def hang(self, request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response()

    async def drop(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # hang up without an answer, as a crashing server does
        await asyncio.sleep(60)
        return web.Response()

    async def gzipped(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b'{"fingerprint": "0123456789abcdef"}'), headers={"Content-Encoding": "gzip"}
        )

    async def cookie(self, request: web.Request) -> web.Response:
        response = web.Response(text="set")
        response.set_cookie("session", "from-a")
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(5):
            await response.write(f"chunk{i};".encode())
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    async def start(self, *, keepalive: float = 75.0, ssl_context: ssl.SSLContext | None = None) -> str:
        self.runner = web.AppRunner(self.app, keepalive_timeout=keepalive, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serving(test: Callable[[str, Services], Awaitable[Any]], **kw: Any) -> Any:
    services = Services()
    base = await services.start(**kw)
    try:
        return await test(base, services)
    finally:
        await services.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_is_a_connect_error_that_says_so() -> None:
    async def go() -> None:
        async with http_client() as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"http://127.0.0.1:{free_port()}/")
        assert describe_error(caught.value) == "connection refused"

    run(go())


def test_no_answer_is_a_read_timeout() -> None:
    async def go(base: str, _: Services) -> None:
        async with http_client() as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpx.ReadTimeout) as caught:
                await client.get(f"{base}/hang", timeout=0.3)
            assert loop.time() - started < 2
        assert describe_error(caught.value) == "timed out"

    run(serving(go))


def test_a_hang_up_is_not_reported_as_a_timeout() -> None:
    async def go(base: str, _: Services) -> None:
        async with http_client() as client:
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                await client.get(f"{base}/drop")
        assert not isinstance(caught.value, httpx.TimeoutException)
        assert "disconnected" in describe_error(caught.value)

    run(serving(go))


def test_connections_are_kept_and_replaced_after_the_server_closes_them() -> None:
    async def go(base: str, services: Services) -> None:
        async with http_client() as client:
            for _ in range(5):
                assert (await client.get(f"{base}/echo")).status_code == 200
            assert services.connections == 1  # one connection for five requests
            await asyncio.sleep(0.6)  # the server's idle timeout closes it
            response = await client.post(f"{base}/echo", content=b"after the idle timeout")
            assert response.json()["body"] == "after the idle timeout"
            assert services.connections == 2

    run(serving(go, keepalive=0.3))


def test_headers_and_bodies_arrive_as_httpx_built_them() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    async def go(base: str, services: Services) -> None:
        async with http_client() as client:
            sent = await client.post(f"{base}/echo", json={"a": 1}, headers={"X-Rotator-Signature": "sig"})
            echoed = sent.json()
            assert echoed["body"] == '{"a":1}'
            assert echoed["headers"]["Content-Type"] == "application/json"
            assert echoed["headers"]["X-Rotator-Signature"] == "sig"
            assert echoed["headers"]["User-Agent"].startswith("python-httpx/")  # not aiohttp's
            assert echoed["headers"]["Host"] == base.removeprefix("http://")
            streamed = await client.post(f"{base}/echo", content=chunks())
            assert streamed.json()["body"] == "one two three"
            assert sent.http_version == "HTTP/1.1" and sent.reason_phrase == "OK"

    run(serving(go))


def test_compressed_answers_are_decoded_once_and_streams_stream() -> None:
    async def go(base: str, _: Services) -> None:
        async with http_client() as client:
            assert (await client.get(f"{base}/gzip")).json() == {"fingerprint": "0123456789abcdef"}
            got: list[bytes] = []
            async with client.stream("GET", f"{base}/stream") as response:
                async for chunk in response.aiter_bytes():
                    got.append(chunk)
            assert b"".join(got) == b"".join(f"chunk{i};".encode() for i in range(5))

    run(serving(go))


def test_a_cookie_from_one_service_is_not_sent_to_another() -> None:
    """Cookies ignore ports: one jar would hand service A's session to service B."""

    async def go() -> None:
        a, b = Services(), Services()
        base_a, base_b = await a.start(), await b.start()
        try:
            async with http_client() as client:
                assert "session" in (await client.get(f"{base_a}/cookie")).headers["set-cookie"]
                assert "Cookie" not in (await client.get(f"{base_b}/echo")).json()["headers"]
                assert "Cookie" not in (await client.get(f"{base_a}/echo")).json()["headers"]
        finally:
            await a.stop()
            await b.stop()

    run(go())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def go(base: str, _: Services) -> None:
        async with http_client() as client:  # the default CAs do not know this certificate
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"{base}/echo")
            assert "certificate" in describe_error(caught.value).lower()
        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(transport=AiohttpTransport(ssl_context=trusting)) as client:
            assert json.loads((await client.get(f"{base}/echo")).text)["method"] == "GET"

    run(serving(go, ssl_context=server_ctx))


def test_send_shares_the_pools_and_raises_the_same_errors() -> None:
    """`PluginContext.send`: the lean path a consumer's signal and confirm take."""
    from rotator.plugin import PluginContext

    async def go(base: str, services: Services) -> None:
        ctx = PluginContext(max_threads=1)
        try:
            assert (await ctx.http.get(f"{base}/echo")).status_code == 200  # arm's preflight
            reply = await ctx.send("POST", f"{base}/echo", content=b"signal", headers={"X-A": "1"}, timeout=5)
            assert reply.is_success and reply.json()["body"] == "signal"
            assert reply.json()["headers"]["X-A"] == "1"
            assert reply.json()["headers"]["User-Agent"].startswith("rotator/")
            assert reply.headers["content-type"].startswith("application/json")  # case-insensitive
            assert services.connections == 1  # the connection the preflight opened
            assert (await ctx.send("GET", f"{base}/gzip", timeout=5)).json() == {"fingerprint": "0123456789abcdef"}
            with pytest.raises(httpx.ReadTimeout):
                await ctx.send("GET", f"{base}/hang", timeout=0.3)
            with pytest.raises(httpx.RemoteProtocolError):
                await ctx.send("GET", f"{base}/drop", timeout=5)
            with pytest.raises(httpx.ConnectError) as caught:
                await ctx.send("GET", f"http://127.0.0.1:{free_port()}/", timeout=5)
            assert describe_error(caught.value) == "connection refused"
        finally:
            await ctx.aclose()

    run(serving(go))


def test_proxies_from_the_environment_only_where_a_default_httpx_client_took_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notifiers' and the watch's clients (trust_env=True) go through HTTP_PROXY, as the
    default httpx clients they were did; the plugins' shared client never did."""
    seen: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        try:
            async with http_client(trust_env=True) as client:
                assert (await client.post("http://hooks.rotator-test.invalid/notify", content=b"x")).text == "ok"
            assert seen == ["POST http://hooks.rotator-test.invalid/notify HTTP/1.1"]
            async with http_client() as client:
                with pytest.raises(httpx.ConnectError):  # straight to the (unresolvable) host
                    await client.get("http://hooks.rotator-test.invalid/notify")
            assert len(seen) == 1
        finally:
            server.close()
            await server.wait_closed()

    run(go())
