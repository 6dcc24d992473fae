"""Plan files: one TOML file per secret, checked without touching the network.

Every problem is reported as one line, ``FILE: key.path: what is wrong``, and
unknown keys are errors so that a typo never passes silently.  One module per
table (``secret``, ``probe``, ``rotation``, ``schedules``), the plan itself
(``model``) and the reading and checking of a file (``parse``); the names are
imported from here as before.
"""

from __future__ import annotations

from rotator.errors import PlanError
from rotator.plan.deep_keys import MAX_KEY_PARTS
from rotator.plan.model import PLACEHOLDER, Plan, PlanFile
from rotator.plan.parse import MAX_PLAN_BYTES, load_plan, parse_plan
from rotator.plan.probe import ADJUTOR_PROBE_URL, ProbeSpec
from rotator.plan.rotation import RotationSpec
from rotator.plan.schedules import ScheduleSpec
from rotator.plan.secret import AppName, SecretSpec, Strategy

__all__ = [
    "ADJUTOR_PROBE_URL",
    "MAX_KEY_PARTS",
    "MAX_PLAN_BYTES",
    "PLACEHOLDER",
    "AppName",
    "Plan",
    "PlanError",
    "PlanFile",
    "ProbeSpec",
    "RotationSpec",
    "ScheduleSpec",
    "SecretSpec",
    "Strategy",
    "load_plan",
    "parse_plan",
]
