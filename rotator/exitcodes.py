"""Exit codes: each outcome an operator or a script must tell apart."""

from enum import IntEnum


class Exit(IntEnum):
    DONE = 0  # every target written and every consumer signalled (and confirmed where it can)
    ERROR = 1  # an unexpected failure (a bug): reported in one line, details in the log
    PLAN_INVALID = 2  # the plan file (or a command-line argument) is wrong; nothing was done
    KEY_REFUSED = 3  # the probe (or paste hygiene) refused the key; nothing was written
    PROBE_UNAVAILABLE = 4  # the probe could not give an answer; nothing was written
    PARTIAL = 5  # the primary holds the new key, some targets failed: `rotator resume ID`
    PREFLIGHT_FAILED = 6  # arming found a target that is not ready; nothing was written
    BUSY = 7  # another rotation or sync of the same plan holds the lock
    DRIFT = 8  # `sync --check`: some backend differs from the primary
    CONFLICT = 9  # the primary changed between arm and write (check-and-set); nothing written
    JOURNAL = 10  # the journal cannot be opened or written (disk full, `--db` unreachable or unknown)
    PRIMARY_FAILED = 11  # the primary write failed (unreachable, deleted, scheduled for deletion); nothing written
    NOTHING_TO_RESUME = 12  # `resume` of a rotation that never wrote the primary: rotate again
    MISSING_EXTRA = 13  # an optional dependency is not installed (the line names the extra)
    KEY_NOT_RESET = 14  # the pasted key is the one the primary already holds: the key was not reset
    # This run lost its plan lock (the journal's database restarted and another rotation took the
    # plan meanwhile): it stopped; the line says what was written (`rotator resume ID` if anything).
    LOCK_LOST = 17
    INTERRUPTED = 130  # Ctrl-C / SIGINT: the line says what was written and how to finish
