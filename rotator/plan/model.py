"""A plan as the file is validated (`PlanFile`) and as rotator uses it (`Plan`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rotator.notify.base import NotifierSettings
from rotator.plan.probe import ProbeSpec
from rotator.plan.rotation import RotationSpec
from rotator.plan.schedules import ScheduleSpec
from rotator.plan.secret import SecretSpec, Strategy
from rotator.plan.strict import Strict
from rotator.plugin import BackendSettings, ConsumerSettings
from rotator.proxy.config import ProxySpec

PLACEHOLDER = "CHANGE-ME"  # what `rotator init` writes where the operator must put a value


class PlanFile(Strict):
    """The file's tables as written; the plugin sections stay raw until their plugin checks them."""

    secret: SecretSpec
    probe: ProbeSpec = Field(default_factory=lambda: ProbeSpec(enabled=False))
    rotation: RotationSpec = Field(default_factory=RotationSpec)
    backends: list[dict[str, Any]] = Field(min_length=1)
    consumers: list[dict[str, Any]] = Field(default_factory=list)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    notify: list[dict[str, Any]] = Field(default_factory=list)
    proxy: ProxySpec | None = None  # `rotator proxy PLAN` (rotator.proxy)


@dataclass
class Plan:
    path: Path
    secret: SecretSpec
    probe: ProbeSpec
    rotation: RotationSpec
    backends: list[BackendSettings]
    consumers: list[ConsumerSettings]
    schedules: list[ScheduleSpec] = field(default_factory=list)
    notify: list[NotifierSettings] = field(default_factory=list)  # rotator.notify: after a run
    proxy: ProxySpec | None = None  # the [proxy] section: `rotator proxy PLAN`

    @property
    def name(self) -> str:
        return self.secret.name

    @property
    def primary(self) -> BackendSettings:
        return next(b for b in self.backends if b.primary)

    @property
    def others(self) -> list[BackendSettings]:
        return [b for b in self.backends if not b.primary]

    @property
    def alternating(self) -> bool:
        return self.secret.strategy is Strategy.ALTERNATING

    def placeholders(self) -> list[tuple[str, str]]:
        """(where, what it is) for each setting still holding PLACEHOLDER (a plan `rotator init` wrote)."""
        found: list[tuple[str, str]] = []
        entries: list[tuple[str, BaseModel]] = [("secret", self.secret)]
        entries += [(f"backends[{i}]", b) for i, b in enumerate(self.backends)]
        entries += [(f"consumers[{i}]", c) for i, c in enumerate(self.consumers)]
        for where, model in entries:
            for name, info in type(model).model_fields.items():
                value = getattr(model, name)
                values = value if isinstance(value, list) else [value]
                if any(PLACEHOLDER in str(v).upper() for v in values):
                    found.append((f"{where}.{name}", info.description or name))
        return found

    def hints(self) -> list[str]:
        """One line each of advice `rotator check` prints for a valid plan (not problems)."""
        left = self.placeholders()
        if left:
            return [
                f"{self.path}: hint: {where} is a placeholder ({PLACEHOLDER}): set it to {what}" for where, what in left
            ]
        if self.alternating:
            return []
        return [
            f"{self.path}: hint: this plan resets the key in use, so consumers fail until they have the new one; "
            '[secret] strategy = "alternating" with apps = ["APP", "OTHER-APP"] (a second Adjutor app with the '
            "same API services, its key kept as a standby on the primary) makes a reset fail no call"
        ]
