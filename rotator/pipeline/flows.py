"""The flows an armed session can run, by name: what the CLI's commands and the service's arm
look up (`find`), so that a new flow reaches both without an edit to either.

A flow is a list of steps in `pipeline/__init__.py`; a `FlowSpec` here says how a session runs
it: which plans it applies to (single-app or alternating), what the journal calls it
(`RunKind`), whether it takes a key, and how to make its `session.Flow` from the run's options.
A flow that takes one key and runs a list of steps on it is a `SingleFlow(steps=...)`:

    register(FlowSpec("probe", RunKind.CHECK, alternating=False, takes_key=True,
                      make=lambda options: SingleFlow(steps=pipeline.probe_only)))

`rotator rotate PLAN --flow NAME` and the API's `POST /api/plans/{name}/arm {"flow": NAME}`
then run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotator.pipeline.alternating import IncidentChoice
from rotator.pipeline.alternating_flow import AlternatingFlow, FlowName
from rotator.pipeline.single_flow import SingleFlow
from rotator.report import RunKind

if TYPE_CHECKING:
    from rotator.pipeline.session import Flow


@dataclass(frozen=True)
class FlowOptions:
    """What a front end asked for, beside the flow's name."""

    dry_run: bool = False  # probe the key only (the single-app rotation)
    unavailable_keeps_armed: bool = True  # a key the probe could not check: ask again (else: stop)
    choice: IncidentChoice | None = None  # an incident without a valid standby: the operator's choice


@dataclass(frozen=True)
class FlowSpec:
    name: str
    kind: RunKind  # what the journal calls a run of it
    alternating: bool  # for alternating plans (True) or single-app plans (False)
    takes_key: bool  # asks the operator for a key (else it runs at once after arm)
    make: Callable[[FlowOptions], Flow]
    takes_choice: bool = False  # `choice` applies (the incident)
    dry_run: bool = False  # `dry_run` applies (probe only): refused for a flow that would ignore it


FLOWS: dict[tuple[str, bool], FlowSpec] = {}


def register(spec: FlowSpec) -> None:
    """Add (or replace) a flow, under its name for its kind of plan."""
    FLOWS[(spec.name, spec.alternating)] = spec


def find(name: str, *, alternating: bool) -> FlowSpec | None:
    """The flow called `name` for this kind of plan; None when there is none."""
    return FLOWS.get((name, alternating))


def names(*, alternating: bool) -> list[str]:
    """The flows a plan of this kind can run."""
    return [name for name, alt in FLOWS if alt == alternating]


register(
    FlowSpec(
        "rotate",
        RunKind.ROTATE,
        alternating=False,
        takes_key=True,
        make=lambda o: SingleFlow(dry_run=o.dry_run, unavailable_keeps_armed=o.unavailable_keeps_armed),
        dry_run=True,
    )
)
for _name in FlowName:
    register(
        FlowSpec(
            _name.value,
            _name.kind,
            alternating=True,
            takes_key=_name not in (FlowName.PROMOTE, FlowName.ROLLBACK),
            make=lambda o, n=_name: AlternatingFlow(n, o.choice),  # type: ignore[misc]
            takes_choice=_name is FlowName.INCIDENT,
        )
    )
