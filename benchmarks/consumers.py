"""The consumer's view of a key reset: failed calls and outage seconds, single-app vs alternating.

    python -m benchmarks.consumers            # pauses 0, 2 and 10 s, about 1.5 minutes
    python -m benchmarks.consumers --quick    # pauses 0 and 2 s, fewer promotes

The headline set-up of `benchmarks.window` (Vault primary, AWS and a .env file,
10 webhook consumers; every request answered after 50 ms, consumers reloading
in 50 ms), with consumers that *use* the key: each calls the Adjutor stand-in's
API with the key it runs on every `interval` (5 ms) after the previous answer,
and timestamps every call that fails.  On rotator's signed webhook it reloads
(`reload_delay` after the notice) by reading the key from the .env file that
rotator wrote.  The stand-in's organisation has two apps (``payments-blue``,
``payments-green``); resetting one revokes only that one's key.

* **single**: the usual plan on blue's key.  The operator resets blue (every
  consumer's key dies), takes `pause` seconds to paste, rotator writes and
  signals: the consumers fail from the reset to their reload.
* **alternating**: the same plan with ``strategy = "alternating"``, the standby
  (green) seeded once.  Each rotation promotes the standby (the promote's window:
  key taken from the standby slot -> last consumer confirmed), then asks the
  operator to reset the retired app, which no consumer uses; the operator takes
  `pause` seconds to paste; rotator stores the key as the standby and proves the
  old one refused.

Failed calls and outage seconds are counted by each consumer over the whole
flow (arm to report).  Outage: per run of failed calls, from the first failed
call's start to the next good call's start, summed.  The promote's critical
path is `benchmarks.window.critical_path` without the probe (both keys were
probed at arm): primary swap and read-back + slowest other write and read-back
+ signal + confirm.  Writes results/consumers.json and results/consumers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/consumers.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import _latent
from benchmarks._services import AWS_ENV, AWS_REGION, LOOPBACK, VAULT_TOKEN, _Farm, _MotoServer
from benchmarks.window.cases import HOOK_ENV, RESULTS, VARIABLE, VAULT_ENV, Case, Latency, Setup
from benchmarks.window.child import Child
from benchmarks.window.critical_path import critical_path, injected_hops, measure_hops
from benchmarks.window.run_rotator import progress_printer
from benchmarks.window.stats import summary

BLUE, GREEN = "payments-blue", "payments-green"
HEADLINE = Case("headline", 0, 1, 1, 10, False, 0, 0)  # 3 backends + 10 consumers, as benchmarks.window's
GOAL_RATIO = 1.10


# ---------------------------------------------------------------- services (child processes)


def backends_main(conn: Any) -> None:
    """Child process: a two-app Adjutor stand-in, the Vault double, moto; all with a latency."""
    os.environ.update(AWS_ENV)
    import boto3

    import rotator.testing.vaultserver as vaultserver
    from rotator.testing import ROOT, VaultServer
    from rotator.testing.adjutor import AdjutorStandIn

    vaultserver._Handler.disable_nagle_algorithm = True  # as real Vault (Go) does: see _services

    class Vault(VaultServer):
        answer_in = 0.0

        def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
            arrived = time.perf_counter()
            reply = super().handle(method, target, headers, body)
            wait = arrived + self.answer_in - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            return reply

    from rotator.testing.adjutor import StandInServer

    class QuietServer(StandInServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            # A probe cancelled mid-request (the reset watch stops when the key arrives) closes
            # its connection: the broken pipe is expected, not worth a traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    class StandIn(AdjutorStandIn):
        server_class = QuietServer

    standin = StandIn(app=BLUE)
    standin.add_app(GREEN)
    standin.start()
    vault = Vault(tokens={VAULT_TOKEN: ROOT}, latency=0.0).start()
    moto = _MotoServer(0.0)
    sm = boto3.client("secretsmanager", endpoint_url=moto.url, region_name=AWS_REGION)
    conn.send({"api_url": standin.url, "probe_url": standin.models_url, "vault_url": vault.url, "moto_url": moto.url})
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "latency":
                standin.latency, vault.answer_in, moto.latency = args
                reply: Any = True
            elif cmd == "seed":  # every backend holds `app`'s key alone (no standby): a fresh start
                vault_paths, aws_names, *rest = args  # window.measure_hops seeds with two arguments
                app = rest[0] if rest else BLUE
                key = standin.key_of(app)
                for p in vault_paths:
                    vault.put(p, {"api_key": key, "other": "kept"})
                existing = {s["Name"] for s in sm.list_secrets(MaxResults=100).get("SecretList", [])}
                for name in aws_names:
                    if name in existing:
                        sm.put_secret_value(SecretId=name, SecretString=key)
                    else:
                        sm.create_secret(Name=name, SecretString=key)
                reply = key
            elif cmd == "reset":  # "Reset app key": that app's old key dies here
                reply = (standin.reset(args[0]), time.perf_counter())
            elif cmd == "stop":
                conn.send(True)
                break
            else:
                reply = RuntimeError(f"unknown command {cmd}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = RuntimeError(f"{cmd}: {type(exc).__name__}: {exc}")
        conn.send(reply)
    standin.stop()
    vault.stop()
    moto.stop()


class CallingFarm(_Farm):
    """`_services._Farm`'s webhook consumers, each also calling the API with the key it runs on.

    A reload reads the key from the .env file rotator wrote (`env_path`); every call
    is timestamped (start, perf_counter) with its status, failures kept in full."""

    def __init__(self, hmac_key: bytes) -> None:
        super().__init__(hmac_key)
        self.keys: list[str] = []
        self.calls: list[list[tuple[float, bool]]] = []
        self.errors: list[dict[str, int]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.env_path: Path | None = None
        self.stopping = False

    async def start_calls(self, api_url: str, key: str, env_path: str, interval: float) -> bool:
        from rotator.secret import fingerprint

        await self.stop_calls()
        n = len(self.fp)
        self.env_path = Path(env_path)
        self.keys = [key] * n
        self.fp = [fingerprint(key)] * n
        self.calls = [[] for _ in range(n)]
        self.errors = [{} for _ in range(n)]
        self.tasks = [asyncio.ensure_future(self._caller(i, api_url, interval)) for i in range(n)]
        return True

    async def stop_calls(self) -> None:
        """Each caller finishes the call it is in (no request cut off half-way), then stops."""
        self.stopping = True
        await asyncio.gather(*self.tasks)
        self.tasks, self.stopping = [], False

    async def _caller(self, i: int, api_url: str, interval: float) -> None:
        import httpx

        from rotator.testing.adjutor import MODELS_PATH

        async with httpx.AsyncClient(base_url=api_url, timeout=10, limits=httpx.Limits(max_connections=1)) as client:
            while not self.stopping:
                started = time.perf_counter()
                try:
                    r = await client.get(MODELS_PATH, headers={"Authorization": f"Bearer {self.keys[i]}"})
                    ok, what = r.status_code == 200, str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, what = False, type(exc).__name__
                self.calls[i].append((started, ok))
                if not ok:
                    self.errors[i][what] = self.errors[i].get(what, 0) + 1
                await asyncio.sleep(interval)

    def _reloaded(self, i: int, fp: str) -> None:
        from rotator.demo.consumer_app import read_env_value
        from rotator.secret import fingerprint

        assert self.env_path is not None
        key = read_env_value(self.env_path, VARIABLE)
        if key:
            self.keys[i], self.fp[i] = key, fingerprint(key)

    def window(self, since: float, until: float) -> list[dict[str, Any]]:
        """Per consumer, its calls started in [since, until]: counts, each failure's time, the outage."""
        out = []
        for i, calls in enumerate(self.calls):
            seen = [(t, ok) for t, ok in calls if since <= t <= until]
            failures = [t for t, ok in seen if not ok]
            outage, began = 0.0, None
            for t, ok in seen:
                if not ok and began is None:
                    began = t
                elif ok and began is not None:
                    outage += t - began
                    began = None
            if began is not None:  # still failing at the end of the flow
                outage += until - began
            out.append(
                {
                    "calls": len(seen),
                    "failed": len(failures),
                    "failed_at": failures,
                    "outage_seconds": outage,
                    "errors": dict(self.errors[i]),
                }
            )
        for e in self.errors:
            e.clear()
        return out


def consumers_main(conn: Any, hmac_key: bytes) -> None:
    """Child process: the calling consumer farm.  Commands over `conn`."""
    asyncio.run(_consumers(conn, hmac_key))


async def _consumers(conn: Any, hmac_key: bytes) -> None:
    farm = CallingFarm(hmac_key)
    loop = asyncio.get_running_loop()
    conn.send(True)
    while True:
        cmd, *args = await loop.run_in_executor(None, conn.recv)
        try:
            if cmd == "setup":  # n, latency, reload_delay, fingerprint -> ports
                await farm.stop_calls()
                reply: Any = await farm.setup(*args)
            elif cmd == "calls":  # api_url, key, env_path, interval
                reply = await farm.start_calls(*args)
            elif cmd == "window":  # since, until (perf_counter)
                reply = farm.window(*args)
            elif cmd == "stop":
                await farm.stop_calls()
                conn.send(True)
                break
            else:
                reply = RuntimeError(f"unknown command {cmd}")
        except Exception as exc:  # noqa: BLE001
            reply = RuntimeError(f"{cmd}: {type(exc).__name__}: {exc}")
        conn.send(reply)
    for s in farm.servers:
        s.close()


# ---------------------------------------------------------------- the plan and the world


@dataclass
class World:
    s1: Child
    s2: Child
    root: Path
    lat: Latency
    interval: float
    hook_key: bytes
    env_path: Path | None = None
    consumer_urls: list[str] | None = None

    def measured_hops(self) -> dict[str, float]:
        """`window.measure_hops` on these servers: each kind of request timed alone, one at a time."""
        info = self.info
        setup = Setup(
            case=HEADLINE,
            lat=self.lat,
            plan_data={},
            probe_url=info["probe_url"],
            vault_url=info["vault_url"],
            moto_url=info["moto_url"],
            vault_paths=["bench/primary"],
            aws_names=["bench/aws-0"],
            env_paths=[self.env_path] if self.env_path else [],
            consumer_urls=self.consumer_urls or [],
            hook_key=self.hook_key,
        )
        return measure_hops(setup, self.s1)

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.s1.ready)

    def reset(self, app: str) -> tuple[str, float]:
        key, at = self.s1.call("reset", app)
        return str(key), float(at)

    def fresh(self, alternating: bool) -> dict[str, Any]:
        """Every backend and consumer on blue's key, the standby empty; returns the plan's data."""
        from rotator.secret import fingerprint

        key = self.s1.call("seed", ["bench/primary"], ["bench/aws-0"], BLUE)
        env = self.root / "env" / "svc-0.env"
        env.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        env.write_text(f"# service 0\nAPP=bench\n{VARIABLE}={key}\nLOG_LEVEL=info\n")
        env.chmod(0o600)
        n = HEADLINE.consumers
        ports = self.s2.call("setup", n, self.lat.consumer, self.lat.reload_delay, fingerprint(key))
        self.env_path, self.consumer_urls = env, [f"http://{LOOPBACK}:{p}" for p in ports]
        self.s2.call("calls", self.info["api_url"], key, str(env), self.interval)
        info = self.info
        backends = [
            {
                "name": "vault",
                "type": "vault",
                "primary": True,
                "url": info["vault_url"],
                "path": "bench/primary",
                "field": "api_key",
                "token": {"env": VAULT_ENV},
            },
            {
                "name": "aws-0",
                "type": "aws",
                "secret_id": "bench/aws-0",
                "region": AWS_REGION,
                "endpoint_url": info["moto_url"],
            },
            {"name": "env-0", "type": "envfile-latent", "path": str(env), "variable": VARIABLE},
        ]
        consumers = [
            {
                "name": f"svc-{i}",
                "type": "webhook",
                "url": f"http://{LOOPBACK}:{p}/reload",
                "confirm_url": f"http://{LOOPBACK}:{p}/fingerprint",
                "hmac_key": {"env": HOOK_ENV},
            }
            for i, p in enumerate(ports)
        ]
        secret: dict[str, Any] = {"name": "bench-consumers"}
        if alternating:
            secret |= {"strategy": "alternating", "apps": [BLUE, GREEN]}
        return {
            "secret": secret,
            "probe": {"preset": "adjutor", "url": info["probe_url"]},
            "rotation": {"deadline": 60.0},
            "backends": backends,
            "consumers": consumers,
        }


class Operator:
    """The operator, played by the benchmark: resets the app rotator names, waits `pause`, pastes."""

    def __init__(self, world: World, pause: float) -> None:
        self.world, self.pause = world, pause
        self.resets: list[tuple[str, float]] = []
        self.notices: list[str] = []

    async def key(self, ask: Any) -> Any:
        from rotator.secret import Secret

        key, at = await asyncio.to_thread(self.world.reset, ask.app)
        self.resets.append((ask.app, at))
        await asyncio.sleep(self.pause)
        return Secret(key)

    def notice(self, line: str) -> None:
        self.notices.append(line)


def _consumer_view(world: World, since: float, until: float) -> dict[str, Any]:
    per = world.s2.call("window", since, until)
    failed = [c["failed"] for c in per]
    outage = [c["outage_seconds"] for c in per]
    return {
        "failed_calls": failed,
        "outage_seconds": outage,
        "calls": [c["calls"] for c in per],
        "failed_at": [[round(t - since, 4) for t in c["failed_at"]] for c in per],  # seconds after the flow began
        "errors": [c["errors"] for c in per],
        "failed_total": sum(failed),
        "outage_max": max(outage, default=0.0),
    }


# ---------------------------------------------------------------- the flows


async def _single(world: World, plan_data: dict[str, Any], journal: Any, pause: float) -> dict[str, Any]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan
    from rotator.secret import Secret

    plan = parse_plan(plan_data, Path("bench-consumers.toml"))
    state = RotationState(plan, journal, reason="benchmark", operator="benchmark", progress_fn=progress_printer())
    since = time.perf_counter()
    try:
        armed = await arm.run(state)
        if not armed.ok:
            raise RuntimeError("arm failed: " + "; ".join(armed.problems()))
        key, reset_at = await asyncio.to_thread(world.reset, BLUE)
        await asyncio.sleep(pause)  # the operator copies and pastes
        state.key_arrived()
        report = await pipeline.rotate(state, Secret(key))
    finally:
        await arm.disarm(state)
    await asyncio.sleep(0.2)  # calls under way when the report came back
    if report.exit_code != 0:
        raise RuntimeError(f"single-app rotation: {report.message}")
    return {"window": report.window, "reset_at": reset_at, **_consumer_view(world, since, time.perf_counter())}


async def _alternating(
    world: World, plan_data: dict[str, Any], journal: Any, pause: float, flow: str
) -> dict[str, Any]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan

    plan = parse_plan(plan_data, Path("bench-consumers.toml"))
    kind = "rekey" if flow == "seed" else "rotate"
    state = RotationState(
        plan, journal, kind=kind, reason="benchmark", operator="benchmark", progress_fn=progress_printer()
    )
    operator = Operator(world, pause)
    since = time.perf_counter()
    try:
        alt = await pipeline.arm_alternating(state)
        if flow == "seed":
            report = await pipeline.rekey_standby(state, alt, operator)
        else:
            report = await pipeline.rotate_alternating(state, alt, operator)
    finally:
        await arm.disarm(state)
    await asyncio.sleep(0.2)
    if report.exit_code != 0:
        raise RuntimeError(f"alternating {flow}: {report.message}; {operator.notices}")
    promote = (report.alternating or {}).get("promote") or {}
    rekeys = (report.alternating or {}).get("rekeys") or []
    slowest = max(report.targets, key=lambda t: t.finished or 0.0, default=None)
    return {
        "promote_window": promote.get("window_s"),
        "steps": dict(report.steps),
        "slowest_target": slowest.name if slowest else None,
        "resets": [a for a, _ in operator.resets],
        "previous_key_revoked": bool(rekeys) and all(r.get("previous_revoked") for r in rekeys),
        **_consumer_view(world, since, time.perf_counter()),
    }


# ---------------------------------------------------------------- output


def _per_consumer(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def markdown(results: dict[str, Any]) -> str:
    m, h = results["meta"], results["headline"]
    lines = [
        f"3 backends (Vault primary, AWS, .env) + {HEADLINE.consumers} consumers, every request answered after "
        f"{m['latency']['probe'] * 1000:.0f} ms, consumers reloading in {m['latency']['reload_delay'] * 1000:.0f} ms "
        f"and calling the API every {m['interval'] * 1000:.0f} ms after each answer. {m['cpus']} CPUs (load average "
        f"{m['load_average']['before']:.1f} before, {m['load_average']['after']:.1f} after), Python "
        f"{m['python']}, {m['mode']} run, {m['seconds']:.0f} s.",
        "",
        "| mode | operator pause | runs | failed calls per consumer (total) | outage per consumer | window |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        runs = row["runs"]
        failed = [f for r in runs for f in r["failed_calls"]]
        outage = [o for r in runs for o in r["outage_seconds"]]
        win = [r["window"] if row["mode"] == "single" else r["promote_window"] for r in runs if not r.get("warmup")]
        win = win or [r["promote_window"] for r in runs]
        lines.append(
            f"| {row['mode']} | {row['pause']:.0f} s | {len(runs)} | {_per_consumer(failed, '{:.0f}')} "
            f"({sum(failed)}) | {_per_consumer(outage, '{:.2f}')} s | "
            f"{statistics.median(win) * 1000:.0f} ms{' (promote)' if row['mode'] == 'alternating' else ''} |"
        )
    p = h["promote"]
    lines += [
        "",
        f"Promote window (alternating, {p['n']} promotes after one warm-up): median {p['median'] * 1000:.0f} ms "
        f"[p10 {p['p10'] * 1000:.0f} - p90 {p['p90'] * 1000:.0f}], critical path {p['critical_path'] * 1000:.0f} ms, "
        f"measured floor {p['measured_floor'] * 1000:.0f} ms (the same path from each request timed alone on this "
        f"machine, as benchmarks.window measures it): {h['window_over_measured_floor']:.2f} x the floor. The "
        f"single-app rotation's window in the same run: {h['single_window_over_critical_path']:.2f} x its critical path.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    lines += [
        "",
        "Failed calls and outage are each consumer's own count over the whole flow (arm to report); outage: from the "
        "first failed call's start to the next good call's start, summed. Single: the operator resets the app in use, "
        "pauses, pastes. Alternating: promote the standby, then the operator resets the retired app (no consumer uses "
        "it), pauses, pastes; the old key is proven refused. Promote critical path: primary swap and read-back + "
        "slowest other write and read-back + signal + confirm (no probe: both keys were probed at arm).",
    ]
    return "\n".join(lines) + "\n"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    h = results["headline"]
    alt = {float(k): v for k, v in h["failed_calls"]["alternating"].items()}
    single = {float(k): v for k, v in h["failed_calls"]["single"].items()}
    ratio = h["window_over_critical_path"]
    return [
        {
            "target": "alternating: 0 failed calls at every operator pause",
            "value": ", ".join(f"{p:.0f} s: {n}" for p, n in sorted(alt.items())),
            "met": all(n == 0 for n in alt.values()),
        },
        {
            "target": f"3 backends + 10 consumers: promote window <= {GOAL_RATIO:.2f} x its critical path",
            "value": f"{ratio:.3f} x ({h['promote']['median'] * 1000:.0f} / {h['promote']['critical_path'] * 1000:.0f} ms)",
            "met": ratio <= GOAL_RATIO,
        },
        {
            "target": "(for comparison) single app: failed calls at each pause",
            "value": ", ".join(f"{p:.0f} s: {n}" for p, n in sorted(single.items())),
            "met": True,
        },
    ]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.consumers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pauses 0 and 2 s only, fewer promotes")
    ap.add_argument("--pauses", help="comma-separated operator pauses in seconds (default 0,2,10)")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every request (default 0.05)")
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between a consumer's calls (default 0.005)")
    ap.add_argument("--promotes", type=int, help="extra alternating rotations at pause 0 (default 8, quick 3)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for consumers.json and consumers.md")
    args = ap.parse_args(argv)
    pauses = [float(p) for p in (args.pauses or ("0,2" if args.quick else "0,2,10")).split(",")]
    extra = args.promotes if args.promotes is not None else (3 if args.quick else 8)
    lat = Latency(args.latency, args.latency, args.latency, args.latency, args.latency, args.latency)
    hook_key = secrets.token_hex(32)
    os.environ.update(AWS_ENV)
    os.environ[HOOK_ENV] = hook_key
    os.environ[VAULT_ENV] = VAULT_TOKEN
    _latent.register()
    _latent.LatentEnvFile.latency = lat.env

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from rotator.journal import Journal

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="rotator-bench-consumers-"))
    s1 = Child(backends_main)
    s2 = Child(consumers_main, hook_key.encode())
    s1.call("latency", lat.probe, lat.vault, lat.aws)
    world = World(s1, s2, root, lat, args.interval, hook_key.encode())
    journal = Journal(f"sqlite:///{root / 'journal.db'}")
    rows: list[dict[str, Any]] = []
    try:
        plan = world.fresh(alternating=False)
        for pause in pauses:
            run = asyncio.run(_single(world, plan, journal, pause))
            run["load"] = os.getloadavg()[0]
            rows.append({"mode": "single", "pause": pause, "runs": [run]})
            log(
                f"single      pause {pause:>4.0f} s: {run['failed_total']} failed calls, outage <= {run['outage_max']:.2f} s"
            )
        plan = world.fresh(alternating=True)
        seed = asyncio.run(_alternating(world, plan, journal, 0.0, "seed"))
        log(f"alternating seed: standby re-keyed, {seed['failed_total']} failed calls")
        by_pause: dict[float, list[dict[str, Any]]] = {p: [] for p in pauses}
        # The first is a warm-up (first-use costs in this process): its calls count, its window does not.
        for n, pause in enumerate([0.0, *pauses, *[0.0] * extra]):
            run = asyncio.run(_alternating(world, plan, journal, pause, "rotate"))
            run["warmup"] = n == 0
            run["load"] = os.getloadavg()[0]
            by_pause.setdefault(pause, []).append(run)
            log(
                f"alternating pause {pause:>4.0f} s: {run['failed_total']} failed calls, promote window "
                f"{run['promote_window'] * 1000:.0f} ms, reset {run['resets']}"
            )
        rows += [{"mode": "alternating", "pause": p, "runs": runs} for p, runs in by_pause.items()]
        hops = world.measured_hops()
    finally:
        journal.close()
        s1.stop()
        s2.stop()
        shutil.rmtree(root, ignore_errors=True)

    cp = critical_path(HEADLINE, injected_hops(lat), lat.reload_delay)
    promote_cp = cp["critical_path"] - cp["probe"]
    windows = [
        r["promote_window"] for row in rows if row["mode"] == "alternating" for r in row["runs"] if not r["warmup"]
    ]
    floor = critical_path(HEADLINE, hops, lat.reload_delay)
    promote_floor = floor["critical_path"] - floor["probe"]
    promote = {**summary(windows), "critical_path": promote_cp, "measured_floor": promote_floor}

    def by_mode(mode: str, key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for row in rows:
            if row["mode"] == mode:
                vals = [r[key] for r in row["runs"]]
                out[f"{row['pause']:g}"] = sum(vals) if key == "failed_total" else max(vals)
        return out

    results: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": "quick" if args.quick else "full",
            "latency": asdict(lat),
            "interval": args.interval,
            "pauses": pauses,
            "consumers": HEADLINE.consumers,
            "cpus": os.cpu_count(),
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "python": platform.python_version(),
            "platform": platform.platform(),
            "command": "python -m benchmarks.consumers" + (" --quick" if args.quick else ""),
        },
        "headline": {
            "window_over_critical_path": promote["median"] / promote_cp,
            "window_over_measured_floor": promote["median"] / promote_floor,
            "failed_calls": {
                "single": by_mode("single", "failed_total"),
                "alternating": by_mode("alternating", "failed_total"),
            },
            "outage_seconds": {
                "single": by_mode("single", "outage_max"),
                "alternating": by_mode("alternating", "outage_max"),
            },
            "promote": promote,
            "single_window_over_critical_path": statistics.median(
                [r["window"] for row in rows if row["mode"] == "single" for r in row["runs"]]
            )
            / cp["critical_path"],
        },
        "critical_path": {**cp, "promote": promote_cp},
        "measured_hops": hops,
        "measured_floor": {**floor, "promote": promote_floor},
        "seed": seed,
        "rows": rows,
    }
    results["targets"] = targets(results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "consumers.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    (args.out / "consumers.md").write_text(md)
    print(md)
    log(f"wrote {args.out / 'consumers.json'} and consumers.md in {results['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
