"""The secret value, its fingerprint, redaction, and paste hygiene.

A `Secret` can travel through logs, exceptions and reprs without showing its
value (``value``); every live secret is scrubbed from text on its way out
(``redaction``); a pasted key is cleaned or refused (``paste``).  The names are
imported from here as before.
"""

from __future__ import annotations

from rotator.secret.paste import (
    ADJUTOR_KEY_PATTERN,
    MAX_KEY_LENGTH,
    CleanKey,
    KeyRejected,
    clean_paste,
    key_regex,
)
from rotator.secret.redaction import REDACTED, compact, encoded_forms, scrub, scrub_data
from rotator.secret.value import FINGERPRINT_PREFIX, Secret, fingerprint, live_values

__all__ = [
    "ADJUTOR_KEY_PATTERN",
    "FINGERPRINT_PREFIX",
    "MAX_KEY_LENGTH",
    "REDACTED",
    "CleanKey",
    "KeyRejected",
    "Secret",
    "clean_paste",
    "compact",
    "encoded_forms",
    "fingerprint",
    "key_regex",
    "live_values",
    "scrub",
    "scrub_data",
]
