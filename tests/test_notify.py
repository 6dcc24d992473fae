"""Notifications ([[notify]]) against real HTTP receivers on loopback.

Each receiver is a real server answering as its service does: Slack (200 "ok"),
Teams Workflows (202), a generic receiver that verifies the signature with
`rotator.consumer.verify_webhook`, one that fails twice then works, one that
always fails.  The reports are real `rotator.report.Report` objects.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from rotator.consumer import InvalidSignature, verify_webhook
from rotator.notify import NotifyStatus, notify_all, notify_warning
from rotator.plan import PlanError, load_plan
from rotator.probe import ProbeOutcome, ProbeResult
from rotator.report import Report, TargetResult
from rotator.secret import Secret
from rotator.testing._http import LoopbackServer

HOOK_KEY = "notify-signing-key-0123456789"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server; `answer(n, received)` gives the status and body of the n-th request."""

    answer: Callable[[int, Received], tuple[int, bytes]]
    requests: list[Received] = field(default_factory=list)
    server: LoopbackServer | None = None

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got = Received(self.path, dict(self.headers.items()), body)
                receiver.requests.append(got)
                status, answer = receiver.answer(len(receiver.requests), got)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = LoopbackServer("127.0.0.1", 0, Handler).start_background("notify-receiver")

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hook/T000/B000/{secrets.token_hex(8)}"

    def close(self) -> None:
        assert self.server is not None
        self.server.stop()


def slack_answer(n: int, r: Received) -> tuple[int, bytes]:
    data = r.json()
    return (200, b"ok") if isinstance(data.get("text"), str) and data["text"] else (400, b"no_text")


def teams_answer(n: int, r: Received) -> tuple[int, bytes]:
    data = r.json()
    att = data.get("attachments") or [{}]
    ok = data.get("type") == "message" and att[0].get("contentType") == "application/vnd.microsoft.card.adaptive"
    return (202, b"") if ok else (400, b"bad card")


def signed_answer(n: int, r: Received) -> tuple[int, bytes]:
    try:
        verify_webhook(HOOK_KEY.encode(), r.headers, r.body)
    except InvalidSignature:
        return 401, b"bad signature"
    return 200, b"{}"


def flaky_answer(n: int, r: Received) -> tuple[int, bytes]:
    return (503, b"busy") if n <= 2 else (200, b"ok")


def failing_answer(n: int, r: Received) -> tuple[int, bytes]:
    return 500, b"internal error"


def gone_answer(n: int, r: Received) -> tuple[int, bytes]:
    return 404, b"no_service"


@pytest.fixture
def receivers() -> Iterator[Callable[[Callable[[int, Received], tuple[int, bytes]]], Receiver]]:
    made: list[Receiver] = []

    def make(answer: Callable[[int, Received], tuple[int, bytes]]) -> Receiver:
        made.append(Receiver(answer))
        return made[-1]

    yield make
    for r in made:
        r.close()


def write_plan(tmp_path: Path, notify: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(
        f"""
[secret]
name = "adjutor-prod"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp_path / "store.env"}"
variable = "ADJUTOR_API_KEY"
{notify}
"""
    )
    return path


def notify_entry(type_: str, env: str, *, name: str = "", extra: str = "") -> str:
    lines = ["", "[[notify]]", f'type = "{type_}"', f'url = {{ env = "{env}" }}', "retries = 2", "backoff = 0.01"]
    if name:
        lines.append(f'name = "{name}"')
    if type_ == "webhook":
        lines.append('hmac_key = { env = "NOTIFY_HOOK_KEY" }')
    return "\n".join([*lines, extra]) + "\n"


def partial_report(key: str) -> Report:
    """A partial rotation whose failing target's detail echoes the key (a careless plugin)."""
    return Report(
        id="20261201-101500-abcd1234",
        kind="rotate",
        plan="adjutor-prod",
        state="partial",
        exit_code=5,
        reason="INC-1234 key leaked in CI logs",
        operator="ada@ops",
        old_fingerprint="8509d785307e1f4c",
        new_fingerprint="134fe7fc468975a2",
        window=0.0341,
        targets=[
            TargetResult("store", "backend", "envfile", status="ok", primary=True),
            TargetResult("vault-eu", "backend", "vault", status="failed", detail=f"HTTP 503 writing {key}"),
            TargetResult("api", "consumer", "webhook", status="skipped", detail="reads from vault-eu"),
        ],
        revocation=ProbeResult(ProbeOutcome.REFUSED, "old key refused (HTTP 401): revoked", status=401),
        warnings=[f"probe cost 0.5 with {key}"],
        message="partial: the primary holds the new key; 2 targets did not finish: rotator resume 20261201-101500-abcd1234",
    )


def done_report() -> Report:
    return Report(
        id="20261201-111500-beef0001",
        kind="rotate",
        plan="adjutor-prod",
        state="done",
        exit_code=0,
        reason="quarterly rotation",
        operator="ada@ops",
        old_fingerprint="134fe7fc468975a2",
        new_fingerprint="ffe1d2c3b4a59687",
        window=0.0212,
        targets=[TargetResult("store", "backend", "envfile", status="ok", primary=True)],
        message="done: every target holds the new key",
    )


def test_check_validates_notify_entries_without_network(tmp_path: Path) -> None:
    good = notify_entry("slack", "SLACK_URL") + notify_entry("teams", "TEAMS_URL") + notify_entry("webhook", "HOOK")
    plan = load_plan(write_plan(tmp_path, good))
    assert [(n.type, n.label) for n in plan.notify] == [("slack", "slack"), ("teams", "teams"), ("webhook", "webhook")]

    bad = """
[[notify]]
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/XXXX"

[[notify]]
type = "pager"
url = { env = "X" }

[[notify]]
type = "webhook"
url = { env = "HOOK" }
retrys = 2
"""
    with pytest.raises(PlanError) as exc:
        load_plan(write_plan(tmp_path, bad))
    problems = exc.value.problems
    label = str(tmp_path / "plan.toml")
    assert (
        f'{label}: notify[0].url: must be {{ env = "NAME" }} or {{ file = "PATH" }}; secrets are never written inline in a plan'
        in problems
    )
    assert any(p.startswith(f"{label}: notify[1].type: unknown notifier type 'pager' (installed: ") for p in problems)
    assert f"{label}: notify[2].hmac_key: required" in problems
    assert f"{label}: notify[2].retrys: unknown key (did you mean `retries`?)" in problems
    assert not any("hooks.slack.com" in p for p in problems)  # the inline URL is a credential: never echoed


def test_slack_teams_and_signed_webhook_get_the_report_never_the_key(
    tmp_path: Path, receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    slack, teams, generic = receivers(slack_answer), receivers(teams_answer), receivers(signed_answer)
    monkeypatch.setenv("SLACK_URL", slack.url)
    monkeypatch.setenv("TEAMS_URL", teams.url)
    monkeypatch.setenv("HOOK_URL", generic.url)
    monkeypatch.setenv("NOTIFY_HOOK_KEY", HOOK_KEY)
    entries = (
        notify_entry("slack", "SLACK_URL", name="ops-slack")
        + notify_entry("teams", "TEAMS_URL")
        + notify_entry("webhook", "HOOK_URL")
    )
    plan = load_plan(write_plan(tmp_path, entries))
    key = Secret("sk_live_" + secrets.token_hex(16))  # alive, as during the rotation
    report = partial_report(key.reveal()).as_dict()
    link = "http://127.0.0.1:8700/#/rotations/20261201-101500-abcd1234"

    results = asyncio.run(notify_all(plan, report, link=link))

    assert [(r.name, r.status, r.attempts) for r in results] == [
        ("ops-slack", NotifyStatus.SENT, 1),
        ("teams", NotifyStatus.SENT, 1),
        ("webhook", NotifyStatus.SENT, 1),
    ]
    assert [r.detail for r in results] == ["HTTP 200", "HTTP 202", "HTTP 200"]
    for receiver in (slack, teams, generic):
        (got,) = receiver.requests
        assert key.reveal() not in got.body.decode()
        assert "sk_live_" not in got.body.decode()

    s = slack.requests[0].json()
    assert s["text"].startswith("adjutor-prod: rotate partial (exit 5)\npartial: the primary holds the new key")
    assert s["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "adjutor-prod: rotate partial (exit 5)"},
    }
    fields = [f["text"] for f in s["blocks"][2]["fields"]]
    assert "*Window*\n34 ms (key received → last target done)" in fields
    assert "*Operator*\nada@ops" in fields
    assert "*Reason*\nINC-1234 key leaked in CI logs" in fields
    assert "*Fingerprint*\n8509d785307e1f4c → 134fe7fc468975a2" in fields
    assert "*Old key*\nold key refused (HTTP 401): revoked" in fields
    assert "*Targets*\n1 failed, 1 ok, 1 skipped" in fields
    assert "• vault-eu: failed: HTTP 503 writing [REDACTED]" in s["blocks"][3]["text"]["text"]
    assert s["blocks"][4]["elements"][0]["url"] == link

    t = teams.requests[0].json()
    card = t["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["body"][0]["text"] == "adjutor-prod: rotate partial (exit 5)"
    assert card["body"][0]["color"] == "Attention"
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Rotation"] == "20261201-101500-abcd1234"
    assert facts["Fingerprint"] == "8509d785307e1f4c → 134fe7fc468975a2"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in rotator", "url": link}]

    g = generic.requests[0]
    verify_webhook(HOOK_KEY.encode(), g.headers, g.body)  # raises if forged
    body = g.json()
    assert body["schema"] == 1
    assert body["event"] == "rotate.failed"
    assert (body["plan"], body["rotation_id"], body["outcome"], body["state"], body["exit_code"]) == (
        "adjutor-prod",
        "20261201-101500-abcd1234",
        "failure",
        "partial",
        5,
    )
    assert (body["operator"], body["reason"]) == ("ada@ops", "INC-1234 key leaked in CI logs")
    assert (body["old_fingerprint"], body["new_fingerprint"]) == ("8509d785307e1f4c", "134fe7fc468975a2")
    assert body["window_seconds"] == 0.0341
    assert body["targets"][1] == {"name": "vault-eu", "status": "failed", "detail": "HTTP 503 writing [REDACTED]"}
    assert body["link"] == link


def test_a_receiver_that_fails_twice_is_retried_until_it_takes_it(
    tmp_path: Path, receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = receivers(flaky_answer)
    monkeypatch.setenv("SLACK_URL", flaky.url)
    plan = load_plan(write_plan(tmp_path, notify_entry("slack", "SLACK_URL")))

    (result,) = asyncio.run(notify_all(plan, done_report().as_dict()))

    assert (result.status, result.attempts, result.detail) == (NotifyStatus.SENT, 3, "HTTP 200")
    assert len(flaky.requests) == 3
    assert flaky.requests[0].body == flaky.requests[2].body  # the same message each time


def test_failing_receivers_are_reported_never_raised_and_never_stop_the_others(
    tmp_path: Path, receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing, gone, good = receivers(failing_answer), receivers(gone_answer), receivers(signed_answer)
    closed = receivers(slack_answer)
    closed_url = closed.url
    closed.close()  # nothing listens there any more
    monkeypatch.setenv("FAILING_URL", failing.url)
    monkeypatch.setenv("GONE_URL", gone.url)
    monkeypatch.setenv("CLOSED_URL", closed_url)
    monkeypatch.setenv("GOOD_URL", good.url)
    monkeypatch.setenv("NOTIFY_HOOK_KEY", HOOK_KEY)
    monkeypatch.delenv("UNSET_URL", raising=False)
    entries = (
        notify_entry("slack", "FAILING_URL", name="failing")
        + notify_entry("teams", "GONE_URL", name="gone")
        + notify_entry("slack", "CLOSED_URL", name="closed")
        + notify_entry("slack", "UNSET_URL", name="unset")
        + notify_entry("webhook", "GOOD_URL", name="good")
    )
    plan = load_plan(write_plan(tmp_path, entries))

    results = {r.name: r for r in asyncio.run(notify_all(plan, partial_report("sk_test_x").as_dict()))}

    assert (results["failing"].status, results["failing"].attempts) == (NotifyStatus.FAILED, 3)
    assert results["failing"].detail == "HTTP 500: the receiver is failing or rate-limiting after 3 attempts"
    assert len(failing.requests) == 3
    # A deleted webhook will not come back: asked once.
    assert (results["gone"].status, results["gone"].attempts) == (NotifyStatus.FAILED, 1)
    assert results["gone"].detail == "HTTP 404: the webhook URL is wrong, revoked or deleted: make a new one"
    assert (results["closed"].status, results["closed"].attempts) == (NotifyStatus.FAILED, 3)
    assert results["closed"].detail.startswith("cannot connect")
    assert (results["unset"].status, results["unset"].attempts) == (NotifyStatus.FAILED, 1)  # not retried
    assert results["unset"].detail == "url: environment variable UNSET_URL is not set"
    assert (results["good"].status, results["good"].attempts) == (NotifyStatus.SENT, 1)
    for r in results.values():  # the URL is a credential: no result names it
        assert "127.0.0.1" not in r.detail and "/hook/" not in r.detail
        assert r.as_dict()["status"] in ("sent", "failed")


def test_only_failures_stays_quiet_on_success_and_warnings_go_through(
    tmp_path: Path, receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = receivers(slack_answer)
    monkeypatch.setenv("SLACK_URL", slack.url)
    plan = load_plan(write_plan(tmp_path, notify_entry("slack", "SLACK_URL", extra="only_failures = true")))

    (quiet,) = asyncio.run(notify_all(plan, done_report().as_dict()))
    assert (quiet.status, quiet.ok, slack.requests) == (NotifyStatus.SKIPPED, True, [])

    (loud,) = asyncio.run(notify_all(plan, partial_report("sk_test_y").as_dict()))
    assert loud.status is NotifyStatus.SENT and len(slack.requests) == 1

    (warned,) = asyncio.run(notify_warning(plan, "adjutor-prod: the key is 95 days old, 5 days past max_age_days = 90"))
    assert warned.status is NotifyStatus.SENT
    assert slack.requests[1].json()["text"].startswith("adjutor-prod: warning\nadjutor-prod: the key is 95 days old")


def test_a_plan_without_notify_sends_nothing(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, ""))
    assert plan.notify == []
    assert asyncio.run(notify_all(plan, done_report().as_dict())) == []


class SilentReceiver:
    """Accepts connections, reads the request, never answers (a hung chat service)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[Any] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook/T000/B000/silent"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_receiver_that_never_answers_is_abandoned_after_the_cli_wait(
    tmp_path: Path, receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's exit and --json wait at most CLI_WAIT for notifications: one still
    unanswered then is reported `abandoned` (not retried); the others are not held up."""
    import time

    from rotator.cli import flow
    from rotator.notify import send

    silent, good = SilentReceiver(), receivers(slack_answer)
    try:
        monkeypatch.setenv("SILENT_URL", silent.url)
        monkeypatch.setenv("GOOD_URL", good.url)
        monkeypatch.setattr(send, "CLI_WAIT", 1.0)
        plan = load_plan(
            write_plan(
                tmp_path,
                notify_entry("slack", "SILENT_URL", name="silent") + notify_entry("slack", "GOOD_URL", name="good"),
            )
        )
        started = time.monotonic()
        results = {r["name"]: r for r in flow.notify(plan, partial_report("sk_test_x"))}
        waited = time.monotonic() - started
        assert results["silent"]["status"] == "abandoned"
        assert "no answer within 1s: abandoned, not retried" in results["silent"]["detail"]
        assert results["good"]["status"] == "sent" and len(good.requests) == 1
        assert waited < 15, waited  # without the bound: the retries' deadline (60 s)
        # Without a wait (the service, in the background) it is still tried to its deadline.
        assert send.DEADLINE == 60.0
    finally:
        silent.close()
