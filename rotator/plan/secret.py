"""The plan's [secret] table: what is rotated, and how (one app, or two alternating)."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import Field, field_validator

from rotator.plan.strict import Strict
from rotator.secret import ADJUTOR_KEY_PATTERN, key_regex


class Strategy(enum.StrEnum):
    """How a plan's key is replaced.

    ``single``: one Adjutor app; its key is reset and every consumer fails until it
    has the new one.  ``alternating``: two apps with the same API services; the
    consumers move to the standby app's key (which works already) before the other
    app is reset, so no call fails whatever the operator's speed.
    """

    SINGLE = "single"
    ALTERNATING = "alternating"


AppName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class SecretSpec(Strict):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:/-]+$",
        description="the secret's name: journal and lock key",
    )
    description: str = Field(default="", max_length=2000, description="free text, for people")
    strategy: Strategy = Field(
        default=Strategy.SINGLE,
        description="single: one app; alternating: two apps, the standby key kept on the primary",
    )
    apps: list[AppName] = Field(
        default_factory=list,
        max_length=20,
        description="alternating: the two Adjutor apps, as the dashboard names them",
    )
    max_age_days: int | None = Field(
        default=None, ge=1, le=3650, description="the age-check job warns when the key is older (default: never)"
    )
    reminder_lead_days: int = Field(default=7, ge=0, le=365, description="warn this many days before max age")
    key_pattern: str | None = Field(
        default=ADJUTOR_KEY_PATTERN,
        description="a pasted key that does not match is warned about (the probe decides); RE2 syntax, linear time",
    )

    @field_validator("key_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            key_regex(v)  # RE2, as the paste is matched: linear time, so no pattern can hang the window
        return v
