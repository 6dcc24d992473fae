"""Each kind of case, run alternating against its comparisons; one results dict per case."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks._services import IDLE_TIMEOUT
from benchmarks.window.cases import Case, Setup
from benchmarks.window.child import Child, loadavg
from benchmarks.window.critical_path import critical_path, injected_hops, measure_hops
from benchmarks.window.parallel_floor import parallel_floor_once
from benchmarks.window.run_rotator import _plans_together, cold_once, rotator_once
from benchmarks.window.run_runbook import baseline_once
from benchmarks.window.service import _Service, service_once
from benchmarks.window.stats import cpu_medians, ms, pct, summary

Paths = tuple[list[float], dict[str, float], dict[str, float], dict[str, float]]


def _paths(case: Case, setup: Setup, s1: Child) -> Paths:
    """What every case is measured against, taken before its runs: the load then, the critical
    path from the injected latencies, each request timed alone, and the floor those make."""
    load_start = loadavg()
    cp = critical_path(case, injected_hops(setup.lat), setup.lat.reload_delay)
    hops = measure_hops(setup, s1)
    return load_start, cp, hops, critical_path(case, hops, setup.lat.reload_delay)


def run_case(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any, db_url: str) -> dict[str, Any]:
    case = setup.case
    load_start, cp, hops, floor = _paths(case, setup, s1)
    # One unrecorded warm-up each (first-use costs in this long-lived process).
    rotator_once(setup, journal, s1, s2)
    pf_reps = min(case.reps, max(case.baseline_reps, 2)) if case.parallel_floor else 0
    if pf_reps:
        parallel_floor_once(setup, s1, s2)
    rot_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    pf_runs: list[dict[str, Any]] = []
    for i in range(case.reps):
        order = ("r", "b", "p") if i % 2 == 0 else ("p", "b", "r")
        for which in order:
            if which == "r":
                rot_runs.append(rotator_once(setup, journal, s1, s2))
            elif which == "b" and i < case.baseline_reps:
                base_runs.append(baseline_once(setup, s1, s2))
            elif which == "p" and i < pf_reps:
                pf_runs.append(parallel_floor_once(setup, s1, s2))
    cold = [cold_once(setup, s1, s2, db_url) for _ in range(case.cold_reps)]
    w = summary([r["window"] for r in rot_runs])
    b = summary([r["window"] for r in base_runs]) if base_runs else None
    fb = summary([r["first_probe_byte"] for r in rot_runs if r["first_probe_byte"] is not None])
    steps = {k: pct([r["steps"][k] for r in rot_runs if k in r["steps"]], 0.5) for k in rot_runs[0]["steps"]}
    out: dict[str, Any] = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": w["median"] / cp["critical_path"],
        "window_over_floor": w["median"] / floor["critical_path"],
        "targets": case.targets,
        "fanout_targets": case.fanout,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "critical_path": cp,
        "measured_hops": hops,
        "measured_floor": floor,
        "rotator": {
            "window": w,
            "window_over_critical_path": w["median"] / cp["critical_path"],
            "window_over_measured_floor": w["median"] / floor["critical_path"],
            "first_probe_byte": fb,
            "returned_median": pct([r["returned"] for r in rot_runs], 0.5),
            "server_last_confirm_median": pct(
                [r["server_last_confirm"] for r in rot_runs if r["server_last_confirm"]], 0.5
            )
            if case.consumers
            else None,
            "arm_median": pct([r["arm"] for r in rot_runs], 0.5),
            "steps_median": steps,
            "slowest_targets": sorted({r["slowest_target"] for r in rot_runs}),
            "connections_opened_after_key": rot_runs[-1]["connections_opened_after_key"],
            "runs": [r["window"] for r in rot_runs],
        },
        "cpu_in_window": cpu_medians(rot_runs),
    }
    if b is not None:
        out["baseline"] = {
            "window": b,
            "clients_median": pct([r["clients"] for r in base_runs], 0.5),
            "runs": [r["window"] for r in base_runs],
        }
        out["baseline_over_window"] = b["median"] / w["median"]
    if pf_runs:
        pf = summary([r["window"] for r in pf_runs])
        out["parallel_floor"] = {
            **pf,
            "probe_median": pct([r["probe"] for r in pf_runs], 0.5),
            "primary_median": pct([r["primary"] for r in pf_runs], 0.5),
            "last_backend_median": pct([r["last_backend"] for r in pf_runs], 0.5),
            "last_consumer_median": pct([r["last_consumer"] for r in pf_runs], 0.5),
            "runs": [r["window"] for r in pf_runs],
            "cpu_in_window": cpu_medians(pf_runs),
        }
        out["window_over_parallel_floor"] = w["median"] / pf["median"]
    if cold:
        out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in cold)
        out["rotator"]["cold_process"] = {
            "peak_rss_mb": out["peak_rss_mb"],
            "window": summary([r["window"] for r in cold]),
            "first_probe_byte": summary([r["first_probe_byte"] for r in cold if r["first_probe_byte"] is not None]),
            "imported_after_key": sorted({m for r in cold for m in r["imported"]}),
        }
    runbook = f"runbook {ms(b['median'])} ms = {out['baseline_over_window']:.1f}x" if b else "no runbook"
    cpu = out["cpu_in_window"]
    runbook += f" | CPU in window: rotator {ms(cpu['rotator'])} ms (loop {ms(cpu['rotator_loop'])}), all / cores {ms(cpu['all_over_cores'])} ms"
    if pf_runs:
        runbook += f" | parallel floor {ms(pf['median'])} ms, window / it {out['window_over_parallel_floor']:.2f}x"
    log(
        f"{case.name:>11}: {case.backends} backends + {case.consumers} consumers | critical path {ms(cp['critical_path'])} ms"
        f" | rotator {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] = {out['window_over_critical_path']:.2f}x CP"
        f" | {runbook} | key->probe byte {fb['median'] * 1000:.1f} ms | load {out['load_average']['end'][0]}"
        + (f" | peak RSS {out['peak_rss_mb']:.0f} MB" if cold else "")
    )
    return out


def run_long_wait(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any) -> dict[str, Any]:
    """The key at once and the key after each wait, alternating, same plan and services."""
    case = setup.case
    load_start, cp, _hops, floor = _paths(case, setup, s1)
    rotator_once(setup, journal, s1, s2)
    runs: dict[float, list[dict[str, Any]]] = {0.0: [], **{w: [] for w in case.waits}}
    for i in range(case.reps):
        order = [0.0, *case.waits] if i % 2 == 0 else [*case.waits, 0.0]
        for wait in order:
            runs[wait].append(rotator_once(setup, journal, s1, s2, wait))
    base = summary([r["window"] for r in runs[0.0]])
    waits: dict[str, Any] = {}
    for wait in case.waits:
        w = summary([r["window"] for r in runs[wait]])
        waits[f"{wait:g}"] = {
            "wait": wait,
            "window": w,
            "window_over_critical_path": w["median"] / cp["critical_path"],
            "window_over_floor": w["median"] / floor["critical_path"],
            "window_over_no_wait": w["median"] / base["median"],
            "first_probe_byte": summary([r["first_probe_byte"] for r in runs[wait] if r["first_probe_byte"]]),
            "connections_opened_after_key": [r["connections_opened_after_key"] for r in runs[wait]],
            "steps": [r["steps"] for r in runs[wait]],
            "runs": [r["window"] for r in runs[wait]],
        }
    worst = max(waits.values(), key=lambda v: v["window_over_no_wait"])
    out: dict[str, Any] = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": worst["window_over_critical_path"],
        "window_over_floor": worst["window_over_floor"],
        "window_over_no_wait": worst["window_over_no_wait"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "idle_timeout": IDLE_TIMEOUT,
        "handshake": setup.lat.consumer if case.handshake else 0.0,
        "critical_path": cp,
        "measured_floor": floor,
        "no_wait": {
            "window": base,
            "window_over_critical_path": base["median"] / cp["critical_path"],
            "connections_opened_after_key": [r["connections_opened_after_key"] for r in runs[0.0]],
            "steps": [r["steps"] for r in runs[0.0]],
            "runs": [r["window"] for r in runs[0.0]],
        },
        "waits": waits,
    }
    log(
        f"{case.name:>11}: no wait {ms(base['median'])} ms"
        + "".join(
            f" | {k} s: {ms(v['window']['median'])} ms = {v['window_over_no_wait']:.3f}x no wait,"
            f" opened after key {v['connections_opened_after_key'][-1]}"
            for k, v in waits.items()
        )
        + f" | load {out['load_average']['end'][0]}"
    )
    return out


def run_plans(setups: list[Setup], journal: Any, s1: Child, s2: Child, log: Any) -> dict[str, Any]:
    """Each plan alone, then all at once (keys arriving together), alternating."""
    case = setups[0].case
    load_start, cp, _hops, floor = _paths(case, setups[0], s1)
    for st in setups:
        rotator_once(st, journal, s1, s2)
    asyncio.run(_plans_together(setups, journal, s1, s2))
    alone: list[list[float]] = [[] for _ in setups]
    together: list[list[float]] = [[] for _ in setups]
    for i in range(case.reps):
        for which in ("a", "t") if i % 2 == 0 else ("t", "a"):
            if which == "a":
                for j, st in enumerate(setups):
                    alone[j].append(rotator_once(st, journal, s1, s2)["window"])
            else:
                for j, w in enumerate(asyncio.run(_plans_together(setups, journal, s1, s2))):
                    together[j].append(w)
    per_plan = []
    for j in range(len(setups)):
        a, t = summary(alone[j]), summary(together[j])
        per_plan.append(
            {
                "plan": setups[j].plan_data["secret"]["name"],
                "alone": a,
                "together": t,
                "together_over_alone": t["median"] / a["median"],
                "window_over_critical_path": t["median"] / cp["critical_path"],
            }
        )
    worst = max(per_plan, key=lambda v: v["together_over_alone"])
    out: dict[str, Any] = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": max(v["window_over_critical_path"] for v in per_plan),
        "window_over_floor": max(v["together"]["median"] for v in per_plan) / floor["critical_path"],
        "together_over_alone": worst["together_over_alone"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setups[0].lat.reload_delay,
        "critical_path": cp,
        "measured_floor": floor,
        "plans": per_plan,
    }
    log(
        f"{case.name:>11}: {case.plans} plans of {case.backends} backends + {case.consumers} consumers | alone "
        + ", ".join(ms(v["alone"]["median"]) for v in per_plan)
        + " ms | together "
        + ", ".join(ms(v["together"]["median"]) for v in per_plan)
        + f" ms | worst together/alone {worst['together_over_alone']:.3f}x | load {out['load_average']['end'][0]}"
    )
    return out


def run_service(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any, root: Path) -> dict[str, Any]:
    """The API's window against the library's, same plan and services, alternating."""
    case = setup.case
    load_start, cp, _hops, floor = _paths(case, setup, s1)
    svc = _Service(setup, root)
    try:
        service_once(svc, setup, s1, s2)  # warm-up
        rotator_once(setup, journal, s1, s2)
        via_api: list[dict[str, Any]] = []
        library: list[float] = []
        for i in range(case.reps):
            for which in ("s", "l") if i % 2 == 0 else ("l", "s"):
                if which == "s":
                    via_api.append(service_once(svc, setup, s1, s2))
                else:
                    library.append(rotator_once(setup, journal, s1, s2)["window"])
    finally:
        svc.stop()
    w = summary([r["window"] for r in via_api])
    lib = summary(library)
    lag = [r["final_event_after_last_confirm"] for r in via_api if r["final_event_after_last_confirm"] is not None]
    out: dict[str, Any] = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": w["median"] / cp["critical_path"],
        "window_over_floor": w["median"] / floor["critical_path"],
        "window_over_library": w["median"] / lib["median"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "critical_path": cp,
        "measured_floor": floor,
        "service": {
            "window": w,
            "final_event_after_window": summary(lag) if lag else None,
            "key_post_answered": summary([r["key_post_answered"] for r in via_api]),
            "runs": via_api,
        },
        "library": {"window": lib, "runs": library},
    }
    log(
        f"{case.name:>11}: API window {ms(w['median'])} ms = {out['window_over_critical_path']:.3f}x CP, "
        f"{out['window_over_library']:.3f}x the library's ({ms(lib['median'])} ms) | final SSE event "
        + (f"{lag and pct(lag, 0.5) * 1000:.1f} ms after the last confirmation" if lag else "not seen")
        + f" | load {out['load_average']['end'][0]}"
    )
    return out
