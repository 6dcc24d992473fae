"""The ``webhook`` consumer: a signed POST telling a service to reload its key.

The body names the secret and the new key's fingerprint, never the key: the
service reloads from its own store (a file, Vault, AWS) and can prove which key
it now uses by reporting the fingerprint at `confirm_url`.  The body is signed
with HMAC-SHA256 (`rotator.consumer.sign`) so the service can refuse forgeries
and replays with `rotator.consumer.verify_webhook`.

Confirmation polls are signed too, over an empty body, so a confirm endpoint can
check them with ``verify_webhook(key, headers, b"")`` if it wants.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
from pydantic import Field, field_validator

from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from rotator.plugin import Check, Confirmation, Consumer, ConsumerSettings, PluginError, RotationEvent, SecretRef
from rotator.secret import Secret
from rotator.transport import Reply

from ._http_confirm import as_fingerprint, check_http_url, describe_error, display_url, poll_fingerprint

__all__ = ["WebhookConsumer"]

_RESERVED_HEADERS = {
    SIGNATURE_HEADER.lower(),
    TIMESTAMP_HEADER.lower(),
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class WebhookConsumer(Consumer):
    """POSTs a signed reload notice; confirms by polling `confirm_url` for the fingerprint."""

    class Settings(ConsumerSettings):
        type: str = "webhook"
        url: str = Field(max_length=2000, description="where the reload notice is POSTed")
        hmac_key: SecretRef = Field(description="shared signing key, by env or file")
        confirm_url: str | None = Field(
            default=None, max_length=2000, description='GET answers {"fingerprint": "..."} of the key in use'
        )
        headers: dict[str, str] = Field(default_factory=dict, description="extra headers on every request")

        @field_validator("url", "confirm_url")
        @classmethod
        def _http(cls, v: str | None) -> str | None:
            return None if v is None else check_http_url(v)

        @field_validator("headers")
        @classmethod
        def _headers(cls, v: dict[str, str]) -> dict[str, str]:
            for name, value in v.items():
                if not _HEADER_NAME.match(name):
                    raise ValueError(f"{name!r} is not a valid header name")
                if name.lower() in _RESERVED_HEADERS:
                    raise ValueError(f"{name} is set by rotator and cannot be overridden")
                if "\r" in value or "\n" in value:
                    raise ValueError(f"the value of {name} has a line break")
            return v

    settings: Settings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._hmac: Secret | None = None
        self._answered: str | None = None  # the fingerprint the last reload answer reported

    @property
    def can_confirm(self) -> bool:
        return self.settings.confirm_url is not None

    def describe(self) -> str:
        return f"POST {display_url(self.settings.url)}"

    def _key(self) -> bytes:
        """The signing key, read once (at arm) so a missing env var fails before the reset."""
        if self._hmac is None:
            try:
                self._hmac = self.settings.hmac_key.resolve()
            except PluginError as exc:
                raise PluginError(f"webhook {self.name}: hmac_key: {exc}", retryable=False) from None
        return self._hmac.reveal().encode()

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        ts = int(time.time())
        return {
            **self.settings.headers,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._key(), ts, body),
        }

    async def _touch(self, url: str, method: str) -> httpx.Response:
        headers = self._signed_headers(b"") if method == "GET" else dict(self.settings.headers)
        return await self.ctx.http.request(method, url, headers=headers, timeout=self.settings.timeout)

    async def open(self) -> None:
        """Resolve the key and open the connection now, so the signal skips the handshake;
        the same HEAD keeps it open while armed (a proxy's idle timeout would close it)."""
        self._key()
        try:
            await self._touch(self.settings.url, "HEAD")
        except httpx.HTTPError:
            pass  # preflight reports reachability; warming is best effort
        self.ctx.keep_warm(lambda: self._touch(self.settings.url, "HEAD"))

    async def preflight(self) -> Check:
        try:
            self._key()
        except PluginError as exc:
            return Check(False, str(exc))
        shown = display_url(self.settings.url)
        try:
            response = await self._touch(self.settings.url, "HEAD")
        except httpx.HTTPError as exc:
            return Check(False, f"cannot reach {shown}: {describe_error(exc)}; is the consumer running and url right?")
        detail = f"{shown} reachable (HEAD answered {response.status_code})"
        warnings: list[str] = []
        if response.status_code >= 400:
            # Reachable, but no proof it takes the reload POST: a warning, never a ✓.
            warnings.append(f"{shown}: HEAD answered {response.status_code}; only the reload POST will tell")
        if self.settings.confirm_url:
            confirm_shown = display_url(self.settings.confirm_url)
            try:
                response = await self._touch(self.settings.confirm_url, "GET")
            except httpx.HTTPError as exc:
                return Check(False, f"cannot reach confirm_url {confirm_shown}: {describe_error(exc)}")
            reported = None
            if response.is_success:
                try:
                    body = response.json()
                    reported = as_fingerprint(body.get("fingerprint") if isinstance(body, dict) else None)
                except ValueError:
                    pass
            if reported:
                detail += f"; {confirm_shown} reports {reported}"
            else:
                return Check(
                    None,
                    detail,
                    [
                        *warnings,
                        f'{confirm_shown} answered {response.status_code} without {{"fingerprint": ...}}; confirm may fail',
                    ],
                )
        return Check(True, detail, warnings)

    async def signal(self, event: RotationEvent) -> str:
        payload = {
            "secret": event.secret_name,
            "fingerprint": event.fingerprint,
            "rotation_id": event.rotation_id,
            "timestamp": event.timestamp,
            "reason": event.reason,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {**self._signed_headers(body), "Content-Type": "application/json"}
        shown = display_url(self.settings.url)
        started = time.perf_counter()
        try:
            response = await self.ctx.send(
                "POST", self.settings.url, content=body, headers=headers, timeout=self.settings.timeout
            )
        except httpx.TimeoutException:
            raise PluginError(f"POST {shown} timed out after {self.settings.timeout:g}s; is the consumer up?") from None
        except httpx.HTTPError as exc:
            raise PluginError(f"POST {shown} failed: {describe_error(exc)}; is the consumer running?") from None
        elapsed = (time.perf_counter() - started) * 1000
        status = response.status_code
        if 200 <= status < 300:
            # A consumer that reloads before answering may say so: {"fingerprint": "<new>"}
            # confirms it at once, without polling confirm_url (one round trip less).
            self._answered = _reported_fingerprint(response)
            if self._answered == event.fingerprint:
                return f"POST {shown} answered {status} in {elapsed:.0f} ms, running on the new key"
            return f"POST {shown} answered {status} in {elapsed:.0f} ms"
        if status in (401, 403):
            hint = "check that hmac_key (and headers) match the consumer's"
        elif status == 404:
            hint = "check url"
        elif 300 <= status < 400:
            hint = "set url to the address it redirects to"
        else:
            hint = "see the consumer's log"
        # A server error, a timeout at a proxy or a rate limit may pass; a refusal will not.
        retryable = status >= 500 or status in (408, 429)
        raise PluginError(f"POST {shown} answered HTTP {status}; {hint}", retryable=retryable)

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        if self._answered == fingerprint:
            return Confirmation(True, fingerprint, "its reload answer reports the new fingerprint")
        if not self.settings.confirm_url:
            return Confirmation(False, detail="no confirm_url; set one to confirm the reload")
        return await poll_fingerprint(
            self.ctx.send,
            self.settings.confirm_url,
            fingerprint,
            deadline,
            request_timeout=self.settings.timeout,
            headers=lambda: self._signed_headers(b""),
        )


def _reported_fingerprint(response: Reply) -> str | None:
    """The fingerprint a reload answer reports, if it is JSON with a well-formed one."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return as_fingerprint(data.get("fingerprint")) if isinstance(data, dict) else None
