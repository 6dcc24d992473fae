"""The plan's ``[proxy]`` section: where the proxy listens, where it forwards, its bounds.

Checked with the rest of the plan, with no network (`rotator check`).  Only
pydantic and the standard library here: the plan loader imports this module.

    [proxy]
    listen = "127.0.0.1:8088"                # or "unix:/run/rotator/api.sock"
    upstream = "https://adjutor.lendsqr.com" # default: the probe url's origin
    channel = "unix:/run/rotator/proxy-key.sock"
    channel_token = { file = "/run/secrets/rotator-proxy-token" }
    hold_deadline = 30
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rotator.plugin import SecretRef

DEFAULT_PORT = 8088
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass(frozen=True)
class Address:
    """Where something listens: a Unix socket path, or a host and a port."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"

    def url(self) -> str:
        """The base URL a client uses (a Unix socket's is ``http://localhost``, the socket given apart)."""
        return "http://localhost" if self.path is not None else f"http://{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``unix:/abs/path`` or ``HOST:PORT`` (IPv6 in brackets); ValueError says the form."""
    if text.startswith("unix:"):
        path = Path(text[5:]).expanduser()
        if not path.is_absolute():
            raise ValueError(f"{text!r}: a Unix socket needs an absolute path (unix:/run/rotator/api.sock)")
        return Address(path=path)
    m = _HOST_PORT.match(text)
    if not m or not 0 <= int(m["port"]) <= 65535:
        raise ValueError(f"{text!r}: give HOST:PORT (127.0.0.1:8088) or unix:/absolute/path")
    return Address(host=m["host"].strip("[]"), port=int(m["port"]))


class ConsumerToken(BaseModel):
    """A local per-consumer token: the consumer sends it as its bearer token (never the API key)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    token: SecretRef


class ProxySpec(BaseModel):
    """How `rotator proxy PLAN` runs.  Bounds on holding: requests, bytes and time."""

    model_config = ConfigDict(extra="forbid")
    listen: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}", description="HOST:PORT on loopback, or unix:/path")
    socket_mode: str = Field(default="0600", description="file mode of a Unix socket: 0600 or 0660 (a group)")
    allow_non_loopback: bool = Field(default=False, description="listen on a non-loopback address (a pod's IP)")
    upstream: str | None = Field(default=None, max_length=2000, description="the API's origin; default: the probe's")
    channel: str | None = Field(
        default=None, description="where rotator hands over a new key: unix:/path (mode 0600) or HOST:PORT"
    )
    channel_token: SecretRef | None = Field(default=None, description="the key channel's bearer token")
    consumer_tokens: list[ConsumerToken] = Field(default_factory=list, max_length=1000)
    hold_deadline: float = Field(default=30.0, gt=0, le=600, description="seconds a request may be held")
    max_held: int = Field(default=10_000, ge=1, le=1_000_000, description="requests held at once")
    max_held_bytes: int = Field(default=64 << 20, ge=0, le=8 << 30, description="bytes of held bodies at once")
    max_body: int = Field(default=1 << 20, ge=0, le=1 << 30, description="a larger body is never held")
    retry_after: int = Field(default=5, ge=1, le=3600, description="Retry-After of a 503 past a bound (seconds)")
    upstream_timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds for one upstream answer")
    refresh_from_primary: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="while the key is dead, re-read the primary every this many seconds (0: only the channel)",
    )
    metrics_path: str = Field(default="/metrics", pattern=r"^/[^\s?#]*$")
    pool_size: int = Field(default=100, ge=1, le=10_000, description="upstream connections kept open at most")

    @field_validator("listen", "channel")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            parse_address(v)
        return v

    @field_validator("socket_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("0600", "0660"):
            raise ValueError("0600 (only this user) or 0660 (and its group)")
        return v

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^/\s?#]+/?", v):
            raise ValueError("the API's origin: https://HOST[:PORT], no path")
        return None if v is None else v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> ProxySpec:
        listen = self.listen_address
        if not listen.is_unix and listen.host not in _LOOPBACK and not self.allow_non_loopback:
            raise ValueError(
                f"listen = {self.listen!r} is not loopback: consumers there would use the key without a token; "
                "set allow_non_loopback = true (and consumer_tokens) if that is meant"
            )
        channel = self.channel_address
        if (
            channel is not None
            and not channel.is_unix
            and channel.host not in _LOOPBACK
            and not self.allow_non_loopback
        ):
            raise ValueError(f"channel = {self.channel!r} is not loopback: prefer unix:/path (mode 0600)")
        if self.channel is not None and self.channel_token is None:
            raise ValueError("channel needs channel_token = { file = ... } (who may hand the proxy a key)")
        names = [t.name for t in self.consumer_tokens]
        if len(set(names)) != len(names):
            raise ValueError("consumer_tokens: a name is listed twice")
        return self

    @property
    def listen_address(self) -> Address:
        return parse_address(self.listen)

    @property
    def channel_address(self) -> Address | None:
        return None if self.channel is None else parse_address(self.channel)

    @property
    def mode(self) -> int:
        return int(self.socket_mode, 8)
