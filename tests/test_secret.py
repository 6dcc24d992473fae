"""The Secret type and paste hygiene."""

from __future__ import annotations

import copy
import hashlib
import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.secret import KeyRejected, Secret, clean_paste, fingerprint

KEY = "sk_live_Q2x9V7p3L0aZ5m8N1b4C6d"


def test_fingerprint_is_documented_formula() -> None:
    assert fingerprint(KEY) == hashlib.sha256(b"rotator-fp-v1:" + KEY.encode()).hexdigest()[:16]
    assert len(fingerprint(KEY)) == 16


def test_secret_never_shows_itself() -> None:
    s = Secret(KEY)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", f"{s:>40}", "%s" % s, str([s]), str({"k": s})):  # noqa: UP031
        assert KEY not in text
        assert s.fingerprint in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert copy.deepcopy(s) is s
    assert s.reveal() == KEY


def test_secret_not_in_exception_or_logging(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(KEY)
    try:
        raise ValueError(f"failed with {s}")
    except ValueError as exc:
        assert KEY not in str(exc)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("value %s %r", s, s)
    assert KEY not in caplog.text


def test_secret_equality_without_revealing() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")


@pytest.mark.parametrize(
    "raw",
    [
        KEY,
        f"  {KEY}  ",
        f"{KEY}\n",
        f"{KEY}\r\n",
        f'"{KEY}"',
        f"'{KEY}'",
        f"Bearer {KEY}",
        f"bearer {KEY}\n",
        f'"Bearer {KEY}"',
        f'Bearer "{KEY}"',
        f"\t{KEY}\n\n",
    ],
)
def test_paste_hygiene_strips_what_a_paste_adds(raw: str) -> None:
    clean = clean_paste(raw)
    assert clean.secret.reveal() == KEY
    assert clean.warnings == []


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ('""', "empty"),
        ("Bearer ", "empty"),
        ("sk_live_abc def", "whitespace"),
        ("sk_live_abc\ndef", "whitespace"),
        ("sk_live_abc\x00def", "control"),
        ("sk_live_abc\x1bdef", "control"),
        ("x" * 5000, "at most"),
        ("x" * 100_000, "characters long"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_paste_hygiene_refuses_what_is_not_a_key(raw: str | bytes, why: str) -> None:
    with pytest.raises(KeyRejected, match=why) as info:
        clean_paste(raw)
    if isinstance(raw, str) and len(raw.strip()) > 3:
        assert raw.strip() not in str(info.value)


def test_odd_looking_key_is_warned_not_refused() -> None:
    clean = clean_paste("abc123-not-adjutor")
    assert clean.secret.reveal() == "abc123-not-adjutor"
    assert "does not look like an Adjutor key" in clean.warnings[0]
    assert clean_paste("abc123", key_pattern=r"^abc\d+$").warnings == []
    assert clean_paste("anything", key_pattern=None).warnings == []


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300))
def test_paste_hygiene_never_crashes_and_never_echoes(raw: str) -> None:
    try:
        clean = clean_paste(raw)
    except KeyRejected as exc:
        stripped = raw.strip()
        if len(stripped) >= 6:
            assert stripped not in str(exc)
        return
    value = clean.secret.reveal()
    assert value and not any(c.isspace() for c in value)


def test_compact_leaves_only_the_next_value_for_the_window() -> None:
    """After arm's compact(), the pasted key is matched by a matcher of its own: no full rebuild."""
    from rotator.secret import redaction as sec

    held = [Secret(f"sk_test_compact{i:04d}abcdefgh") for i in range(40)]
    sec.scrub("warm")  # some of them now sit in the small matchers
    sec.compact()
    assert sec._matchers[1] == ()
    pasted = Secret("sk_test_pastedkeyABCDEFGH0123")
    assert sec.scrub(f"echo {pasted.reveal()}") == "echo [REDACTED]"
    _full, recent = sec._matchers
    assert [m.values for m in recent] == [frozenset({pasted.reveal()})]
    assert all(sec.scrub(h.reveal()) == "[REDACTED]" for h in held)


def test_a_text_found_clean_is_scanned_again_once_a_new_secret_exists() -> None:
    """scrub remembers clean texts, but only under the matchers that found them clean."""
    from rotator.secret import redaction as sec

    value = "sk_test_cachedvalue0123456789"
    line = f"consumer said: {value}"
    assert sec.scrub(line) == line  # no such secret yet: clean, and remembered
    assert sec.scrub(line) == line
    held = Secret(value)
    assert sec.scrub(line) == "consumer said: [REDACTED]"
    assert sec.scrub(line) == "consumer said: [REDACTED]"
    # A text that held a secret is never what the cache keeps.
    assert line not in sec._clean[1]
    assert held.reveal() == value


@given(
    value=st.text(min_size=4, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    which=st.integers(min_value=0, max_value=20),
)
def test_the_gil_holding_pre_check_never_clears_a_text_that_holds_a_form(
    value: str, before: str, after: str, which: int
) -> None:
    """scrub skips RE2 for a short text only when `_may_hold` says no form can start in it:
    that must be False for no text holding any form `encoded_forms` lists, at any place (which
    also fails should a form ever be shorter than the 4 characters the check compares)."""
    from rotator.secret import redaction as sec

    try:
        forms = sorted(sec.encoded_forms(value))
    except UnicodeEncodeError:  # a lone surrogate: not a value a Secret is made of
        return
    form = forms[which % len(forms)]
    (matcher,) = sec._Matcher.build(frozenset({value}))
    text = before + form + after
    assert sec._may_hold(text, matcher.starts)
    held = Secret(value)
    assert "[REDACTED]" in sec.scrub(text)  # and RE2, which it let through, replaced it
    assert held.reveal() == value


def test_a_short_clean_text_is_cleared_without_re2() -> None:
    """The pre-check holds the GIL (google-re2 releases it for every match, which cost the
    window's event loop ~75 us a scan beside busy SDK threads); a text with a key still goes to RE2.
    Checked on this value's own matcher: other tests' values may still be live in this process."""
    from rotator.secret import redaction as sec

    held = Secret("sk_test_precheckvalue0123456789")
    (matcher,) = sec._Matcher.build(frozenset({held.reveal()}))
    assert not sec._may_hold("POST http://127.0.0.1:40123/reload answered 200 in 52 ms", matcher.starts)
    assert sec._may_hold(f"echo {held.reveal()[::-1]}", matcher.starts)
    assert sec.scrub(f"said {held.reveal()[::-1]}!") == "said [REDACTED]!"
