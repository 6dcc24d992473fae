"""A plan's targets as an operator reads them: kind, name, type and where each is.

`where` is the plugin's own `describe()` (a Vault path and field, a file and
variable, a URL with its credentials hidden), so one look tells which Vault,
which file, which process a plan touches before anything is armed.  Nothing is
opened and nothing is read: it needs no network and no credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from rotator.plan import Plan
from rotator.plugin import PluginContext
from rotator.registry import backend_class, consumer_class


@dataclass(frozen=True)
class TargetInfo:
    kind: str  # backend | consumer
    name: str
    type: str
    where: str
    primary: bool = False


async def describe_plan(plan: Plan) -> list[TargetInfo]:
    """Every backend (the primary first, as the plan lists them) and consumer of `plan`."""
    ctx = PluginContext(max_threads=1)
    try:
        out = [
            TargetInfo("backend", b.name, b.type, backend_class(b.type)(b, ctx).describe(), b.primary)
            for b in plan.backends
        ]
        out += [
            TargetInfo("consumer", c.name, c.type, consumer_class(c.type)(c, ctx).describe()) for c in plan.consumers
        ]
        return out
    finally:
        await ctx.aclose()


def target_lines(targets: list[TargetInfo]) -> list[str]:
    """One aligned line per target, for `rotator plugins --plan PLAN`."""
    width = max((len(t.name) for t in targets), default=0)
    return [
        f"{t.kind:<9} {t.name:<{width}} {t.type:<10} {t.where or '-'}{'  (primary)' if t.primary else ''}"
        for t in targets
    ]
