"""What the operator is told once a rotation is armed (the terminal and the page say the same)
and why it could not be armed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.report import ArmResult


def reset_path(app: str | None = None) -> str:
    """Where the reset is in Adjutor's dashboard, said once (naming the app when a flow knows which)."""
    apps = f"Apps → {app}" if app else "Apps"
    return f"Business → {apps} → View details → Reset app key"


# What the operator does once armed: the dashboard steps, said once for the terminal and the page.
ARMED_HEADLINE = (
    "Every target is ready. Now reset the key; the old key stops working at once, so the window starts now."
)
RESET_STEPS = (
    f"Adjutor dashboard → {reset_path()}",
    "Copy the new key the dashboard shows.",
)
PASTE_PROMPT = "Paste it here and press Enter (input is hidden)."
PASTE_STDIN = "Pipe it in: reading the key from stdin."
PASTE_PAGE = "Paste it into the key field here and press Enter."


def instruction(paste: str = PASTE_PAGE) -> list[str]:
    """The armed instruction: the headline, then the numbered steps ending with how to paste."""
    return [ARMED_HEADLINE, *RESET_STEPS, paste]


def not_armed_message(armed: ArmResult, what: str = "rotate") -> str:
    problems = "; ".join(armed.problems())
    if what == "rotate":
        return f"not armed: {problems} — fix these before resetting the key"
    return f"cannot {what}: {problems}"
