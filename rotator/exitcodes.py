"""Exit codes: each outcome an operator or a script must tell apart."""

from enum import IntEnum


class Exit(IntEnum):
    DONE = 0  # every target written and every consumer signalled (and confirmed where it can)
    ERROR = 1  # an unexpected failure (a bug): reported in one line, details in the log
    PLAN_INVALID = 2  # the plan file (or a command-line argument) is wrong; nothing was done (alternating: `--incident` without a valid standby needs `--revoke-now` or `--standby-first`; `rollback` with nothing to roll back)
    KEY_REFUSED = 3  # the probe (or paste hygiene) refused the key; nothing was written (alternating: also a key equal to a slot's key, or one while the app's previous key still works)
    PROBE_UNAVAILABLE = 4  # the probe could not reach the API; nothing was written (`--accept-unprobed` overrides)
    PARTIAL = 5  # the primary holds the new key, some targets failed: `rotator resume ID` (alternating: also a re-key refused while a promote has not reached every target)
    PREFLIGHT_FAILED = 6  # arming found a target that is not ready (unreachable, unauthenticated, not writable; alternating: the standby location); nothing was written
    BUSY = 7  # another rotation or sync of the same plan holds the lock
    DRIFT = 8  # `sync --check`, `status`: some backend differs from the primary
    CONFLICT = 9  # the primary changed between arm and write (check-and-set); nothing written; `--force` overrides
    JOURNAL = 10  # the journal cannot be opened or written (disk full, `--db` unreachable or unknown)
    PRIMARY_FAILED = 11  # the primary write failed (unreachable, deleted, scheduled for deletion); nothing else written: fix it and rotate again with the same new key
    NOTHING_TO_RESUME = 12  # `resume` of a rotation it cannot finish: one that never wrote the primary (`rotator rotate PLAN` and enter the key again), or an alternating run whose re-key is left (`rekey_left`: the line names the command that asks for it)
    MISSING_EXTRA = (
        13  # an optional dependency is not installed; the line names the extra, e.g. `pip install 'rotator[postgres]'`
    )
    KEY_NOT_RESET = 14  # the pasted key is the one the primary already holds: the key was not reset (`--resync` copies it everywhere on purpose)
    SLOT_RECORD = 15  # alternating: the slot record is missing, unreadable or disagrees; nothing asked, nothing written: `rotator status PLAN --repair --active APP`
    LEAKED_KEY = 16  # alternating: the step would put an incident's recorded leaked key back in use; nothing written
    NOT_REKEYED = 17  # alternating: the app asked for was not re-keyed (the other app was reset): say so, never success
    # `status` (for cron and monitoring; 0 only when every key works and nothing drifted;
    # a refused key wins over drift, drift over anything that could not be checked):
    STATUS_REFUSED = 18  # `status`: the API refused a key the plan holds (consumers on it are failing)
    STATUS_UNCHECKED = 19  # `status`: a key could not be checked (API unreachable, 5xx, no probe) or a backend not read
    PROXY_LISTEN = 20  # `rotator proxy` cannot listen on its address or key channel (in use, no permission)
    LOCK_LOST = 21  # this run lost its plan lock (the journal's database restarted and another rotation took the plan meanwhile): it stopped; the line says what was written (`rotator resume ID` if anything)
    INTERRUPTED = 130  # Ctrl-C / SIGINT: the line says what was written and how to finish


def meanings() -> dict[Exit, str]:
    """Each code's meaning: the comment beside it above, so the enum stays the one place it is written.

    `rotator help exit-codes` and the docs' table print these.
    """
    import io
    import tokenize
    from pathlib import Path

    found: dict[Exit, str] = {}
    source = Path(__file__).read_text(encoding="utf-8")
    member: Exit | None = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in Exit.__members__:
            member = Exit[tok.string]
        elif tok.type == tokenize.COMMENT and member is not None:
            found[member] = tok.string.lstrip("#").strip()
            member = None
        elif tok.type == tokenize.NEWLINE:
            member = None
    return found
