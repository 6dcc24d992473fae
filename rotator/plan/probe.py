"""The plan's [probe] table: the HTTP request a new key must pass before anything is written."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from rotator.plan.strict import Strict

ADJUTOR_PROBE_URL = "https://adjutor.lendsqr.com/v2/decisioning/models"


class ProbeSpec(Strict):
    """An HTTP request that must succeed with the new key before it is written."""

    preset: Literal["adjutor"] | None = Field(
        default=None, description="adjutor: GET /v2/decisioning/models with a Bearer key, expecting status success"
    )
    url: str | None = Field(default=None, max_length=2000, description="the request's URL (never holds {key})")
    method: Literal["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE"] = Field(default="GET", description="HTTP method")
    headers: dict[str, str] = Field(
        default_factory=dict, description="{key} in a value is replaced by the key being probed"
    )
    accept_status: list[int] = Field(default_factory=list, description="empty means any 2xx")
    refuse_status: list[int] = Field(
        default_factory=lambda: [401, 403], description="these refuse the key: nothing is written"
    )
    expect_json: dict[str, str | int | bool] = Field(
        default_factory=dict, description="top-level JSON fields the body must have"
    )
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(default=2, ge=0, le=10, description="retries of unavailable answers (5xx, timeouts) only")
    backoff: float = Field(default=0.2, ge=0, le=30, description="seconds before the first retry")
    check_old_key: bool = Field(
        default=False, description="after the rotation, the old key must be refused (proof of revocation)"
    )
    enabled: bool = Field(default=True, description="false: keys are written unprobed")
    paths: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="more paths on the url's host that every key must be accepted on "
        "(alternating: a promote never moves consumers to an app lacking one of these API services)",
    )
    watch_interval: float = Field(
        default=0.5, description="seconds between probes of the old key while armed (reset detection); 0 = off"
    )

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for i, path in enumerate(v):
            if not re.fullmatch(r"/[^\s?#{}]*(\?[^\s#{}]*)?", path):
                raise ValueError(f"[{i}] {path!r}: a path starting with / (no spaces, no #, no {{key}})")
        if len(set(v)) != len(v):
            raise ValueError("a path is listed twice")
        return v

    def urls(self) -> list[str]:
        """Every URL a key must be accepted on: `url`, then each of `paths` on its host."""
        if not self.url:
            return []
        origin = urlsplit(self.url)
        return [self.url, *(f"{origin.scheme}://{origin.netloc}{p}" for p in self.paths)]

    @field_validator("watch_interval")
    @classmethod
    def _watch_interval(cls, v: float) -> float:
        # Under 0.1 s is 10+ calls a second to the operator's API for a time good to 0.1 s anyway.
        if v != 0 and not 0.1 <= v <= 60:
            raise ValueError("0 (off) or between 0.1 and 60 seconds")
        return v

    @model_validator(mode="after")
    def _apply_preset(self) -> ProbeSpec:
        if self.preset == "adjutor":
            if self.url is None:
                self.url = ADJUTOR_PROBE_URL
            if not self.headers:
                self.headers = {"Authorization": "Bearer {key}"}
            if not self.expect_json:
                self.expect_json = {"status": "success"}
        if self.enabled and not self.url:
            raise ValueError('give url, or preset = "adjutor"')
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("url must start with http:// or https://")
        if self.enabled and not any("{key}" in v for v in self.headers.values()) and "{key}" not in (self.url or ""):
            raise ValueError('no header or url uses {key}; e.g. headers = { Authorization = "Bearer {key}" }')
        if self.url and "{key}" in self.url:
            raise ValueError("the key must not go in the url (it would reach access logs); put {key} in a header")
        return self
