"""The ``proxy`` consumer: hand the new key to a running `rotator proxy` and confirm it by fingerprint.

The proxy is the one consumer rotator gives the key itself (`takes_key`).  Under
`rotator serve`, which runs the proxy of a plan with a ``[proxy]`` section in its
own event loop, the key goes to it directly, in-process (`rotator.proxy.local`).
Otherwise it goes over the proxy's key channel, a Unix socket of mode 0600 (or a
loopback port) where every call carries the channel token.  No restart and no
reload signal: the proxy switches keys between two requests, replays what it
held, and answers with the fingerprint it now uses, which confirms the rotation
at once.

    [[consumers]]
    name = "api-proxy"
    type = "proxy"
    channel = "unix:/run/rotator/proxy-key.sock"      # omit under `rotator serve` only
    token = { file = "/run/secrets/rotator-proxy-token" }
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from pydantic import Field, field_validator, model_validator

from rotator.plugin import Check, Confirmation, Consumer, ConsumerSettings, PluginError, RotationEvent, SecretRef
from rotator.proxy import local
from rotator.proxy.config import Address, parse_address

from ._http_confirm import POLL_INTERVAL, describe_error

__all__ = ["ProxyConsumer"]

KEY_PATH = "/key"  # = rotator.proxy.channel.KEY_PATH (not imported: that module pulls in aiohttp's server)


class ProxyConsumer(Consumer):
    """Puts the key into a running `rotator proxy` over its authenticated key channel."""

    takes_key = True

    class Settings(ConsumerSettings):
        type: str = "proxy"
        channel: str | None = Field(
            default=None,
            description="the proxy's key channel: unix:/path or HOST:PORT (its [proxy] channel); "
            "none: only the proxy `rotator serve` runs for this plan, in-process",
        )
        token: SecretRef | None = Field(default=None, description="the channel token (the proxy's channel_token)")

        @field_validator("channel")
        @classmethod
        def _address(cls, v: str | None) -> str | None:
            if v is not None:
                parse_address(v)
            return v

        @model_validator(mode="after")
        def _token_with_channel(self) -> ProxyConsumer.Settings:
            if self.channel is not None and self.token is None:
                raise ValueError("token: a channel needs its token (the proxy's channel_token)")
            return self

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self.address: Address | None = parse_address(settings.channel) if settings.channel else None
        self.plan: str | None = getattr(ctx, "plan", None)
        self._client: httpx.AsyncClient | None = None
        self._answered: str | None = None

    @property
    def can_confirm(self) -> bool:
        return True

    def _local(self) -> local.LocalProxy | None:
        """The plan's proxy run by this process (`rotator serve`): it takes the key directly."""
        return local.running(self.plan)

    def _no_proxy(self) -> PluginError:
        return PluginError(
            f"no proxy for plan {self.plan} runs in this process: give this consumer the proxy's channel "
            "and token, or run the plan with its [proxy] section under `rotator serve`",
            retryable=False,
        )

    def describe(self) -> str:
        if self.address is None:
            return "rotator proxy in this process (rotator serve)"
        return f"rotator proxy, key channel {self.address}"

    async def open(self) -> None:
        if self.address is None:
            return
        transport = httpx.AsyncHTTPTransport(uds=str(self.address.path)) if self.address.is_unix else None
        self._client = httpx.AsyncClient(base_url=self.address.url(), transport=transport, trust_env=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self) -> dict[str, str]:
        assert self.settings.token is not None
        return {"Authorization": "Bearer " + self.settings.token.resolve().reveal()}

    async def _call(self, method: str, content: bytes | None = None, timeout: float | None = None) -> Any:
        if self.address is None:
            raise self._no_proxy()
        if self._client is None:
            await self.open()
        assert self._client is not None
        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            response = await self._client.request(
                method, KEY_PATH, content=content, headers=headers, timeout=timeout or self.settings.timeout
            )
        except httpx.HTTPError as exc:
            raise PluginError(
                f"cannot reach the proxy's key channel {self.address}: {describe_error(exc)}; is `rotator proxy` running?"
            ) from None
        if response.status_code == 401:
            raise PluginError(
                f"the proxy at {self.address} refused the channel token; set token to the proxy's channel_token",
                retryable=False,
            )
        if response.status_code != 200:
            raise PluginError(f"the proxy at {self.address} answered HTTP {response.status_code}", retryable=False)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PluginError(f"the proxy at {self.address} answered without its JSON status", retryable=False)
        return data

    async def preflight(self) -> Check:
        here = self._local()
        if here is not None:
            return Check(True, f"proxy in this process uses key {here.fingerprint or 'none yet'}")
        try:
            data = await self._call("GET")
        except PluginError as exc:
            return Check(False, str(exc))
        fp = data.get("fingerprint")
        return Check(True, f"proxy on {self.address} uses key {fp or 'none yet'} ({data.get('state')})")

    async def signal(self, event: RotationEvent) -> str:
        if event.secret is None:
            raise PluginError(
                "rotator did not hand this consumer the key (a bug: proxy sets takes_key)", retryable=False
            )
        here = self._local()
        if here is not None:  # in-process: no socket, no token, the same confirmation
            here.set_key(event.secret)
            self._answered = here.fingerprint
            if self._answered == event.fingerprint:
                return f"proxy in this process switched to the new key ({here.held} held requests replaying)"
            return f"proxy in this process took the key but reports {self._answered}"
        body = json.dumps({"key": event.secret.reveal()}).encode()
        data = await self._call("PUT", body)
        self._answered = data.get("fingerprint") if isinstance(data.get("fingerprint"), str) else None
        held = data.get("held")
        if self._answered == event.fingerprint:
            return f"proxy on {self.address} switched to the new key ({held} held requests replaying)"
        return f"proxy on {self.address} took the key but reports {self._answered}"

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        if self._answered == fingerprint:
            return Confirmation(True, fingerprint, "the proxy's answer reports the new fingerprint")
        here = self._local()
        if here is not None:
            reported = here.fingerprint
            if reported == fingerprint:
                return Confirmation(True, fingerprint, "the proxy in this process reports the new fingerprint")
            return Confirmation(
                False, reported, f"the proxy in this process reports {reported or 'nothing'}, not {fingerprint}"
            )
        loop = asyncio.get_running_loop()
        reported = self._answered
        while loop.time() < deadline:
            try:
                data = await self._call("GET", timeout=max(0.1, min(self.settings.timeout, deadline - loop.time())))
                reported = data.get("fingerprint") if isinstance(data.get("fingerprint"), str) else None
            except PluginError:
                reported = None
            if reported == fingerprint:
                return Confirmation(True, fingerprint, "the proxy reports the new fingerprint")
            await asyncio.sleep(POLL_INTERVAL)
        return Confirmation(False, reported, f"the proxy still reports {reported or 'nothing'}, not {fingerprint}")
