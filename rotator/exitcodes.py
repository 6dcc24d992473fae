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
    # `resume` of a rotation it cannot finish: one that never wrote the primary (rotate again), or an
    # alternating run whose re-key is left (`rekey_left`: the line names the command that asks for it)
    NOTHING_TO_RESUME = 12
    MISSING_EXTRA = 13  # an optional dependency is not installed (the line names the extra)
    KEY_NOT_RESET = 14  # the pasted key is the one the primary already holds: the key was not reset
    SLOT_RECORD = 15  # alternating: the slot record is missing, unreadable or disagrees; nothing asked, nothing written
    LEAKED_KEY = 16  # alternating: the step would put an incident's recorded leaked key back in use; nothing written
    NOT_REKEYED = 17  # alternating: the app asked for was not re-keyed (the other app was reset): say so, never success
    INTERRUPTED = 130  # Ctrl-C / SIGINT: the line says what was written and how to finish
