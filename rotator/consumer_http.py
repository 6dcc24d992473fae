"""Hold-and-retry auth for httpx and requests: calls made across a key reset succeed.

::

    from rotator.consumer import RotatingKey
    from rotator.consumer_http import HoldAndRetryAuth, RequestsHoldAndRetryAuth

    key = RotatingKey.from_env_file(".env", "ADJUTOR_API_KEY", hold=10)
    signal.signal(signal.SIGHUP, lambda *_: key.notify())    # or call it from the reload webhook
    httpx.Client(auth=HoldAndRetryAuth(key))                 # httpx.AsyncClient too
    requests.Session().auth = RequestsHoldAndRetryAuth(key)

Each sends ``Authorization: Bearer <key>``; on a 401 or 403 it asks the
`RotatingKey` for a key other than the refused one (at once if the source
already holds one, else after waiting up to `hold` for it) and sends the
request once more with it.  A request whose body cannot be sent twice (a
generator, a file) is not retried: its refusal is returned as it came.

These live apart from `rotator.consumer` because they subclass httpx's and
requests' base classes: there they would make that module need both libraries,
and it must stay standard-library only.  Here each library is optional; the
adapter for a missing one says so when it is built.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable
from typing import TYPE_CHECKING, Any

from rotator.consumer import HoldTimeout, RotatingKey

if TYPE_CHECKING:
    import httpx
    import requests
    from requests.auth import AuthBase
else:
    try:
        import httpx
    except ImportError:  # optional: only HoldAndRetryAuth needs it
        httpx = None
    try:
        import requests
        from requests.auth import AuthBase
    except ImportError:  # optional: only RequestsHoldAndRetryAuth needs it
        requests = None
        AuthBase = object

__all__ = ["REFUSED", "HoldAndRetryAuth", "RequestsHoldAndRetryAuth"]

REFUSED = frozenset({401, 403})


class _Header:
    """How the key goes on a request (``Authorization: Bearer <key>`` by default)."""

    def __init__(self, header: str, scheme: str) -> None:
        self.header = header
        self.prefix = f"{scheme} " if scheme else ""

    def value(self, key: str) -> str:
        return self.prefix + key

    def sent_key(self, value: str | None) -> str:
        return (value or "")[len(self.prefix) :]


class _HttpxBase:
    pass


class HoldAndRetryAuth(httpx.Auth if httpx is not None else _HttpxBase):  # type: ignore[misc]
    """`httpx.Auth` for `httpx.Client` and `httpx.AsyncClient`: hold a refused call
    until the key changes, then retry it once (see the module docstring)."""

    def __init__(
        self,
        key: RotatingKey,
        *,
        header: str = "Authorization",
        scheme: str = "Bearer",
        refused: Iterable[int] = REFUSED,
    ) -> None:
        if httpx is None:
            raise ImportError("HoldAndRetryAuth needs httpx: pip install httpx")
        self.key = key
        self._header = _Header(header, scheme)
        self._refused = frozenset(refused)

    def __repr__(self) -> str:
        return f"HoldAndRetryAuth({self.key!r})"

    def _sign(self, request: httpx.Request, key: str) -> None:
        request.headers[self._header.header] = self._header.value(key)

    def _retryable(self, request: httpx.Request, response: httpx.Response) -> bool:
        if response.status_code not in self._refused:
            return False
        if not isinstance(request.stream, httpx.ByteStream):  # a generator or file body: sent once only
            self.key.count_not_replayable()
            return False
        return True

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self.key.current()
        self._sign(request, used)
        response = yield request
        if self._retryable(request, response):
            try:
                new = self.key.after_refusal(used, response.status_code)
            except HoldTimeout as exc:
                exc.response = response
                raise
            self._sign(request, new)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        used = self.key.current()
        self._sign(request, used)
        response = yield request
        if self._retryable(request, response):
            try:
                new = await self.key.after_refusal_async(used, response.status_code)
            except HoldTimeout as exc:
                exc.response = response
                raise
            self._sign(request, new)
            yield request


class RequestsHoldAndRetryAuth(AuthBase):
    """A `requests` auth (``session.auth = ...``): signs each request and, from a
    response hook, holds a refused call until the key changes, then retries it once."""

    def __init__(
        self,
        key: RotatingKey,
        *,
        header: str = "Authorization",
        scheme: str = "Bearer",
        refused: Iterable[int] = REFUSED,
    ) -> None:
        if requests is None:
            raise ImportError("RequestsHoldAndRetryAuth needs requests: pip install requests")
        self.key = key
        self._header = _Header(header, scheme)
        self._refused = frozenset(refused)

    def __repr__(self) -> str:
        return f"RequestsHoldAndRetryAuth({self.key!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._header.header] = self._header.value(self.key.current())
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        if response.status_code not in self._refused:
            return response
        sent = response.request
        if not (sent.body is None or isinstance(sent.body, bytes | str)):  # a generator or file: sent once only
            self.key.count_not_replayable()
            return response
        # The key this request carried (no per-request state holds it: a closure or
        # partial in the hooks list would show it in a repr).
        carried = sent.headers.get(self._header.header)
        used = self._header.sent_key(carried.decode() if isinstance(carried, bytes) else carried)
        try:
            new = self.key.after_refusal(used, response.status_code)
        except HoldTimeout as exc:
            exc.response = response
            raise
        response.content  # noqa: B018 -- drain, so the connection goes back to the pool
        response.close()
        retry = sent.copy()
        if retry._cookies is not None:  # cookies the refusal set go on the retry, as requests' digest auth does
            requests.cookies.extract_cookies_to_jar(retry._cookies, sent, response.raw)
            retry.prepare_cookies(retry._cookies)
        retry.headers[self._header.header] = self._header.value(new)
        # The adapter sends it without running hooks again: one retry at most.
        second: requests.Response = response.connection.send(retry, **send_kwargs)
        second.history.append(response)
        second.request = retry
        return second
