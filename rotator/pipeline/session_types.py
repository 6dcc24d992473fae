"""The vocabulary of an armed session (`pipeline.session`): its errors, states, what became of
a key (`Attempt`, from `pipeline.ask`), and the hooks a front end (terminal, page) implements."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from rotator.errors import RotatorError
from rotator.exitcodes import Exit
from rotator.report import KeyOutcome

if TYPE_CHECKING:
    from rotator.pipeline.ask import Attempt, ResetAsk
    from rotator.report import ArmResult, Report
    from rotator.reset_watch import ResetDetected
    from rotator.secret import CleanKey


class NotArmed(RotatorError):
    """Arm found a target not ready: nothing was journaled as started, no key may be taken."""

    exit_code: Exit

    def __init__(self, message: str, armed: ArmResult) -> None:
        super().__init__(message)
        self.armed = armed
        self.exit_code = Exit.PREFLIGHT_FAILED


class SessionBusy(RotatorError):
    """A key was offered to a session that cannot take one now (writing one, finished, closed)."""


class Status(StrEnum):
    ARMING = "arming"
    ARMED = "armed"
    ROTATING = "rotating"
    FINISHED = "finished"
    CLOSED = "closed"


Outcome = KeyOutcome  # the name the session's callers import


class Closed(Exception):
    """Raised by a flow to end its session without a report of its own to finish with (the last
    key refused, the plan's lock lost): closed with `why`; `resume` says how to finish it."""

    def __init__(self, why: str, resume: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.resume = resume


class Listener:
    """What a session tells its front end (terminal, page).  Every method may be left as is."""

    def key(self, clean: CleanKey) -> None:
        """A paste was cleaned into a key; it is about to be probed."""

    def refused(self, attempt: Attempt) -> None:
        """The single flow's key was rejected or refused; `attempt.final`: the session closes now."""

    def finished(self, report: Report) -> None:
        """The rotation ran (done, partial, failed, conflict)."""

    def closed(self, reason: str, resume: str | None = None) -> None:
        """The session ended without (another) key: `reason`, and how to finish it if resumable."""

    def reset_detected(self, reset: ResetDetected) -> None:
        """The old key was refused while armed: the outage began (`reset.ago()` seconds ago)."""

    def warning(self, text: str) -> None:
        """Something the operator should know that changes nothing (e.g. the reset is not watched)."""

    # A flow's (`Flow`) asks: which app to reset and why, what came of each paste.
    def asked(self, ask: ResetAsk) -> None:
        """The flow waits for the operator to reset `ask.app` and paste its key."""

    def rejected(self, message: str) -> None:
        """A paste was not a key; the flow waits for another."""

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        """A key arrived for the flow (it is about to be probed)."""

    def notice(self, line: str) -> None:
        """Something the operator must know at once (the active app was reset by mistake)."""
