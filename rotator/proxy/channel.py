"""The key channel: where rotator hands a running proxy its new key, and reads back its fingerprint.

A small HTTP API on a Unix socket (mode 0600: only the proxy's user) or a
loopback port, every call with ``Authorization: Bearer <channel token>``:

    PUT /key   {"key": "<new key>"}  -> {"fingerprint": ..., "state": ...}
    GET /key                         -> {"fingerprint": ..., "state": ..., "held": N}

The answer to PUT is the engine's fingerprint after the switch: rotator's
`proxy` consumer confirms with it.  No key is ever echoed, logged or put in an
error; a body that is not the expected JSON gets one line saying the form.
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from rotator.proxy.config import Address
from rotator.proxy.engine import Engine
from rotator.proxy.server import listen, unlink_socket
from rotator.secret import MAX_KEY_LENGTH, Secret

KEY_PATH = "/key"


class KeyChannel:
    def __init__(self, engine: Engine, address: Address, token: Secret, *, log: object = None) -> None:
        self.engine = engine
        self.address = address
        self._token = token.reveal().encode()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 10)
        app.router.add_put(KEY_PATH, self._put)
        app.router.add_get(KEY_PATH, self._get)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        await listen(self._runner, self.address, 0o600)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        unlink_socket(self.address)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    def _status(self) -> dict[str, object]:
        return {"fingerprint": self.engine.fingerprint, "state": self.engine.state.value, "held": self.engine.held}

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _refused()
        return web.json_response(self._status())

    async def _put(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _refused()
        try:
            data = json.loads(await request.read())
        except (ValueError, web.HTTPRequestEntityTooLarge):
            data = None
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH or key != key.strip():
            return web.json_response({"error": 'the body must be {"key": "<the new key>"}'}, status=400)
        self.engine.set_key(Secret(key))
        return web.json_response(self._status())


def _refused() -> web.Response:
    return web.json_response({"error": "missing or wrong channel token"}, status=401)
