"""The plan's [[schedules]] tables: the jobs `rotator serve` runs, by cron or every N seconds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rotator.plan.strict import Strict
from rotator.plugin import SecretRef


class ScheduleSpec(Strict):
    job: Literal["sync", "age-check"] = Field(
        description="sync: copy the primary to drifted backends; age-check: key-age warnings"
    )
    cron: str | None = Field(default=None, max_length=200, description="a crontab expression, e.g. */15 * * * *")
    every: int | None = Field(
        default=None, ge=1, le=366 * 86400, description="seconds between runs, instead of cron (e.g. 30)"
    )
    notify: SecretRef | None = Field(default=None, description="webhook URL (e.g. Slack) for warnings, by env or file")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from apscheduler.triggers.cron import CronTrigger

        if v is None:
            return v
        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError('give exactly one of cron = "..." or every = SECONDS')
        return self

    @property
    def when(self) -> str:
        """The timing as an operator reads it: the cron expression, or "every 30s"."""
        return self.cron if self.cron is not None else f"every {self.every}s"
