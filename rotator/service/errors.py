"""What the service refuses, in its own words: the domain errors of `rotations`, `runs` and
`replicas`.  None of them knows HTTP: `routes` gives each its status (`routes.KIND`, and
`routes.STATUS` for one that carries an exit code), so the service can be driven by the
scheduler or a test without a request in sight.

    RotatorError
    └── ServiceError          one line; `details` are the answer's other fields
        ├── NoSuch            no plan or rotation by that name (here, or in the journal)
        ├── Invalid           the request names a flow or a choice that does not apply
        ├── Refused           not in the plan's or the rotation's present state
        ├── ShuttingDown      the service drains: no new work
        ├── Unreachable       a backend could not be read to answer
        └── Stopped           a run refused or stopped with an exit code (`exit_code`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.errors import RotatorError

if TYPE_CHECKING:
    from rotator.exitcodes import Exit


class ServiceError(RotatorError):
    """A request the service does not carry out; `details` go out beside the one line."""

    def __init__(self, message: str, *, exit_code: Exit | None = None, **details: Any) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


class NoSuch(ServiceError):
    """No plan or rotation by that name."""


class Invalid(ServiceError):
    """The request names a flow or a choice that does not apply to the plan."""


class Refused(ServiceError):
    """Not in the present state (already armed, writing, finished, held elsewhere): the line says what to do."""


class ShuttingDown(ServiceError):
    """The service is draining: it takes no new work."""


class Unreachable(ServiceError):
    """A backend could not be read to answer (an alternating plan's slots)."""


class Stopped(ServiceError):
    """A run that was refused or stopped, with the exit code the CLI would end with (`exit_code`)."""

    exit_code: Exit

    def __init__(self, message: str, *, exit_code: Exit, **details: Any) -> None:
        super().__init__(message, exit_code=exit_code, **details)


__all__ = ["Invalid", "NoSuch", "Refused", "ServiceError", "ShuttingDown", "Stopped", "Unreachable"]
