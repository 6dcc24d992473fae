"""The `--json` report's shape, printed from the same `as_dict` the commands print: an example
report with every field (its values made up), so the reference cannot drift from the output."""

from __future__ import annotations

import json

from rotator.probe import ProbeOutcome, ProbeResult
from rotator.report import Report, TargetResult
from rotator.reset_watch import ResetDetected, WatchOutcome, WatchResult

OLD, NEW = "5f0c3c1d2e4a6b79", "9a1b7e3f0c2d4e58"


def example_report() -> Report:
    """A finished single-app rotation of one primary and one consumer, as `rotate --json` reports it."""
    reset = ResetDetected(1893492898.09, 100.0, 1893492897.99, 99.9, 401, "HTTP 401: Invalid token")
    watch = WatchResult(WatchOutcome.RESET, reset, probes=5, last_ok_wall=1893492897.99, last_ok_perf=99.9)
    return Report(
        id="20300101-101500-1a2b3c4d",
        kind="rotate",
        plan="payments",
        state="done",
        exit_code=0,
        reason="quarterly rotation",
        operator="ada",
        old_fingerprint=OLD,
        new_fingerprint=NEW,
        window=0.0958,
        steps={"probe": 0.0023, "primary": 0.024, "fan_out": 0.0135},
        probe=ProbeResult(ProbeOutcome.ACCEPTED, "HTTP 200", 200, 1, 0.0018, cost=0.0, balance=100000.0),
        revocation=ProbeResult(ProbeOutcome.ACCEPTED, "refused (HTTP 401): revoked", 401, 1, 0.0012),
        targets=[
            TargetResult(
                "store",
                "backend",
                "vault",
                "ok",
                "v7 (previous v6 kept)",
                1,
                0.0112,
                0.0351,
                "7",
                NEW,
                True,
                {"write": [0.0112, 0.0301], "read_back": [0.0301, 0.0351]},
            ),
            TargetResult(
                "api",
                "consumer",
                "webhook",
                "ok",
                "its reload answer reports the new fingerprint",
                1,
                0.0351,
                0.0958,
                None,
                NEW,
                False,
                {"signal": [0.0351, 0.0957], "confirm": [0.0957, 0.0958]},
            ),
        ],
        message="every target holds the new key; window 0.096s",
        outage=2.2567,
        operator_share=2.1609,
        key_received_at=1893492900.25,
        reset={**reset.as_dict(), "inferred": False},  # as rotator.pipeline.outage.measure fills it
        watch=watch.as_dict(),
        refused_keys=[
            {
                "at": 1893492900.11,
                "outcome": ProbeOutcome.REFUSED.value,
                "why": "the API refused this key (HTTP 401: Invalid token); nothing was written",
                "attempt": 1,
            }
        ],
    )


def json_shapes_markdown() -> str:
    from rotator.cli.output import SCHEMA

    report = {"schema": SCHEMA, **example_report().as_dict(), "notifications": []}
    error = {
        "schema": SCHEMA,
        "error": "not armed: api: http://127.0.0.1:8081/reload refused the connection",
        "exit_code": 6,
    }
    return (
        "A `rotate`, `resume` or `sync` report (`rotator rotate PLAN --json`):\n\n```json\n"
        + json.dumps(report, indent=2)
        + "\n```\n\nA failure before any report:\n\n```json\n"
        + json.dumps(error, indent=2)
        + "\n```\n"
    )
