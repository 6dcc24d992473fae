"""structlog set-up, with the redaction step that keeps live secrets out of logs.

Redaction is a processor like any other: it runs last before rendering and
replaces any text equal to (or containing) the value of a live `Secret` with
``[REDACTED]``.  Logs are meant to carry fingerprints; this is the net under them.

structlog (~110 ms to import) is loaded by the first `get_logger`, not by
`configure`: `rotator check` and `--help` log nothing and never pay for it.
`configure` sets up stdlib logging at once and structlog either at once (when
loaded already) or on that first `get_logger`, so every structlog logger rotator
makes renders through the redaction step.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

from rotator.secret import REDACTED, Secret, scrub

__all__ = ["ACCESS_FIELDS", "REDACTED", "configure", "get_logger", "redact_secrets"]

# Fields a stdlib record may carry as `extra` into the structured line (the access log's).
ACCESS_FIELDS = ["client", "method", "path", "status"]


def _scrub(value: Any) -> Any:
    """`secret.scrub` applied through the shapes a log event holds."""
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no live secret value survives into a log line."""
    for key in list(event_dict):
        event_dict[key] = _scrub(event_dict[key])
    return event_dict


# A `configure` not yet applied to structlog, with its stdlib handler (scrubbed by its
# filter meanwhile; the structlog renderer becomes its formatter when structlog loads).
_pending: list[tuple[str, TextIO, bool, logging.Handler]] = []


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Console renderer on a TTY, JSON lines otherwise; both after redaction."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _pending[:] = [(level, stream, json, handler)]
    if "structlog" in sys.modules:
        _configure_structlog()


def _configure_structlog() -> None:
    import structlog

    if not _pending:
        return
    level, stream, json, handler = _pending.pop()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries (uvicorn, its access log, apscheduler) log through stdlib
    # logging: redacted, then rendered by the same renderer, so the log is one format.
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(allow=ACCESS_FIELDS),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_secrets, renderer],
        )
    )


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        # A traceback holds exception messages, which may hold a key: render it here,
        # scrubbed, instead of letting the handler's formatter add it unscrubbed.
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            msg += "\n" + record.exc_text
        if record.stack_info:
            msg += "\n" + record.stack_info
        record.msg = scrub(msg)
        record.args = ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def get_logger(name: str = "rotator") -> Any:
    import structlog

    _configure_structlog()
    return structlog.get_logger(name)
