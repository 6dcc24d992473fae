"""The report, from the results JSON alone: `render_tables(results)` is latest.md."""

from __future__ import annotations

from typing import Any

from benchmarks.window.stats import ms


def targets_met(results: dict[str, Any]) -> list[dict[str, Any]]:
    by = {c["case"]["name"]: c for c in results["cases"]}
    out = []
    if "headline" in by:
        h = by["headline"]
        out.append(
            {
                "target": "3 backends + 10 consumers: window <= 1.10 x critical path",
                "value": f"{h['window_over_critical_path']:.3f} x",
                "met": h["window_over_critical_path"] <= 1.10,
            }
        )
        out.append(
            {
                "target": "3 backends + 10 consumers: runbook >= 5 x window",
                "value": f"{h['baseline_over_window']:.2f} x (ceiling from latencies alone: "
                f"{h['critical_path']['sequential_floor'] / h['critical_path']['critical_path']:.2f} x)",
                "met": h["baseline_over_window"] >= 5.0,
            }
        )
    if "headline-reload-500ms" in by:
        h = by["headline-reload-500ms"]
        out.append(
            {
                "target": "(same, consumers reloading in 500 ms) runbook >= 5 x window",
                "value": f"{h['baseline_over_window']:.2f} x (ceiling "
                f"{h['critical_path']['sequential_floor'] / h['critical_path']['critical_path']:.2f} x); "
                f"window {h['window_over_critical_path']:.3f} x critical path",
                "met": h["baseline_over_window"] >= 5.0,
            }
        )
    standard = [c for c in results["cases"] if c["case"]["kind"] == "standard"]
    if standard:
        worst = max(standard, key=lambda c: c["window_over_floor"])
        out.append(
            {
                "target": "window / measured floor <= 1.05 in every case",
                "value": f"{worst['window_over_floor']:.3f} (worst: {worst['case']['name']})",
                "met": worst["window_over_floor"] <= 1.05,
            }
        )
    with_pf = [c for c in standard if "window_over_parallel_floor" in c]
    if with_pf:
        worst = max(with_pf, key=lambda c: c["window_over_parallel_floor"])
        out.append(
            {
                "target": "(informational) window / parallel floor <= 1.05 (rotator's own overhead at N targets)",
                "value": f"{worst['window_over_parallel_floor']:.3f} (worst: {worst['case']['name']}; "
                + ", ".join(f"{c['case']['name']} {c['window_over_parallel_floor']:.2f}" for c in with_pf)
                + ")",
                "met": worst["window_over_parallel_floor"] <= 1.05,
            }
        )
    one = by.get("fanout-1")
    for n, goal in (("200", 1.3), ("1000", 2.0)):
        c = by.get(f"fanout-{n}")
        if one and c:
            r = c["rotator"]["window"]["median"] / one["rotator"]["window"]["median"]
            c["window_over_fanout_1"] = r
            out.append(
                {
                    "target": f"{n} targets: window <= {goal} x window with 1 target",
                    "value": f"{r:.3f} x",
                    "met": r <= goal,
                }
            )
    if "fanout-1000" in by and "peak_rss_mb" in by["fanout-1000"]:
        rss = by["fanout-1000"]["peak_rss_mb"]
        out.append({"target": "1,000 targets: rotator peak RSS <= 250 MB", "value": f"{rss:.0f} MB", "met": rss <= 250})
    if "long-wait" in by:
        for k, v in by["long-wait"]["waits"].items():
            out.append(
                {
                    "target": f"key {k} s after arm: window <= 1.05 x window with the key at once",
                    "value": f"{v['window_over_no_wait']:.3f} x",
                    "met": v["window_over_no_wait"] <= 1.05,
                }
            )
    if "plans-5" in by:
        c = by["plans-5"]
        out.append(
            {
                "target": "5 plans at once: each plan's window <= 1.2 x its window alone",
                "value": f"{c['together_over_alone']:.3f} x (worst plan)",
                "met": c["together_over_alone"] <= 1.2,
            }
        )
    if "service" in by:
        c = by["service"]
        out.append(
            {
                "target": "through the service: window <= 1.10 x critical path",
                "value": f"{c['window_over_critical_path']:.3f} x ({c['window_over_library']:.3f} x the library's)",
                "met": c["window_over_critical_path"] <= 1.10,
            }
        )
        lag = c["service"]["final_event_after_window"]
        if lag:
            out.append(
                {
                    "target": "through the service: final SSE event <= 20 ms after the window's end",
                    "value": f"{lag['median'] * 1000:.1f} ms median ({lag['max'] * 1000:.1f} max)",
                    "met": lag["median"] <= 0.020,
                }
            )
    with_fb = [c for c in standard if c["rotator"]["first_probe_byte"]["n"]]
    if with_fb:
        fb = max(c["rotator"]["first_probe_byte"]["median"] for c in with_fb)
        cold = [
            c["rotator"]["cold_process"]["first_probe_byte"]["max"]
            for c in with_fb
            if "cold_process" in c["rotator"] and c["rotator"]["cold_process"]["first_probe_byte"]["n"]
        ]
        fbmax = max(c["rotator"]["first_probe_byte"]["max"] for c in with_fb)
        out.append(
            {
                "target": "key received -> first probe byte <= 20 ms",
                "value": f"{fb * 1000:.2f} ms (worst median of all cases; worst single run {fbmax * 1000:.2f} ms"
                + (f"; fresh interpreter {max(cold) * 1000:.2f} ms)" if cold else ")"),
                "met": fb <= 0.020,
            }
        )
    return out


def _marginal(c: dict[str, Any], one: dict[str, Any] | None) -> str:
    """rotator's CPU per fan-out target beyond what fanout-1 spends (its fixed costs left out)."""
    if one is None or c["fanout_targets"] <= one["fanout_targets"]:
        return "-"
    extra = c["cpu_in_window"]["rotator"] - one["cpu_in_window"]["rotator"]
    return f"{extra / (c['fanout_targets'] - one['fanout_targets']) * 1e6:.0f} us"


def _load(c: dict[str, Any]) -> str:
    return f"{c['load_average']['start'][0]:.1f} / {c['load_average']['end'][0]:.1f}"


def render_tables(results: dict[str, Any]) -> str:
    m = results["meta"]
    lat = m["latency"]
    banner = {
        "quick": "**Quick run** (`--quick`: fewer repetitions, one 60 s wait instead of 60 s and 300 s), not the full run.",
        "smoke": "**Smoke run** (`--smoke`: the headline case once, a few ms of latency): it proves the benchmark "
        "runs; its figures measure nothing.",
    }
    quick = [banner[m["mode"]], ""] if m["mode"] in banner else []
    lines = [
        *quick,
        f"Injected latency per request: probe {ms(lat['probe'])} ms, Vault {ms(lat['vault'])} ms, "
        f"AWS (moto) {ms(lat['aws'])} ms, .env {ms(lat['env'])} ms per read and per write, "
        f"consumers {ms(lat['consumer'])} ms. {m['cpus']} CPUs, Python {m['python']}, {m['mode']} run, "
        f"{m['seconds']:.0f} s. Servers close connections idle for {m['idle_timeout']:.0f} s.",
        "",
        "| case | backends + consumers | reload | critical path | measured floor | rotator window median [p10-p90] "
        "| window / CP | window / floor | parallel floor median [p10-p90] | window / parallel floor "
        "| runbook median [p10-p90] | runbook / window | key -> probe byte median (max) "
        "| runs rotator/runbook | load 1-min (start / end) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        if c["case"]["kind"] != "standard":
            continue
        r = c["rotator"]
        w, fb = r["window"], r["first_probe_byte"]
        b = c.get("baseline", {}).get("window")
        runbook = (
            f"{ms(b['median'])} ms [{ms(b['p10'])}-{ms(b['p90'])}] | {c['baseline_over_window']:.1f}x" if b else "- | -"
        )
        pf = c.get("parallel_floor")
        parallel = (
            f"{ms(pf['median'])} ms [{ms(pf['p10'])}-{ms(pf['p90'])}] | {c['window_over_parallel_floor']:.2f}"
            if pf
            else "- | -"
        )
        lines.append(
            f"| {c['case']['name']} | {c['backends']} + {c['consumers']} | {ms(c['reload_delay'])} ms "
            f"| {ms(c['critical_path']['critical_path'])} ms | {ms(c['measured_floor']['critical_path'])} ms "
            f"| {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] | {c['window_over_critical_path']:.2f} "
            f"| {c['window_over_floor']:.2f} | {parallel} | {runbook} | {fb['median'] * 1000:.1f} ms ({fb['max'] * 1000:.1f}) "
            f"| {w['n']}/{b['n'] if b else 0} | {_load(c)} |"
        )
    with_cpu = [c for c in results["cases"] if c["case"]["kind"] == "standard" and "cpu_in_window" in c]
    if with_cpu:
        lines += [
            "",
            "**CPU in the window** (key -> last consumer confirmed, medians; every process shares the "
            f"{m['cpus']} cores, so the sum over the cores is the least time this machine needs for that "
            "work; rotator's threads share one GIL):",
            "",
            "| case | rotator, all threads | its event loop | backends' servers | consumers' server "
            "| sum / cores | parallel floor: its process, sum / cores | rotator CPU per target beyond fanout-1's |",
            "|---|---|---|---|---|---|---|---|",
        ]
    one = next((c for c in with_cpu if c["case"]["name"] == "fanout-1"), None)
    for c in with_cpu:
        u = c["cpu_in_window"]
        pfu = c.get("parallel_floor", {}).get("cpu_in_window")
        floor_cpu = f"{ms(pfu['rotator'])} ms, {ms(pfu['all_over_cores'])} ms" if pfu else "-"
        lines.append(
            f"| {c['case']['name']} | {ms(u['rotator'])} ms | {ms(u['rotator_loop'])} ms | {ms(u['backends'])} ms "
            f"| {ms(u['consumers'])} ms | {ms(u['all_over_cores'])} ms | {floor_cpu} | {_marginal(c, one)} |"
        )
    for c in results["cases"]:
        if c["case"]["kind"] == "long-wait":
            nw = c["no_wait"]["window"]
            lines += [
                "",
                f"**{c['case']['name']}** ({c['backends']} backends + {c['consumers']} consumers; idle timeout "
                f"{c['idle_timeout']:.0f} s, a new connection's first answer {ms(c['handshake'])} ms later; "
                f"load {_load(c)}):",
                "",
                "| key after | window median [p10-p90] | window / CP | window / no wait | connections opened after the key |",
                "|---|---|---|---|---|",
                f"| at once | {ms(nw['median'])} ms [{ms(nw['p10'])}-{ms(nw['p90'])}] "
                f"| {c['no_wait']['window_over_critical_path']:.2f} | 1 | "
                f"{_opened(c['no_wait']['connections_opened_after_key'])} |",
            ]
            for k, v in c["waits"].items():
                w = v["window"]
                lines.append(
                    f"| {k} s | {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] "
                    f"| {v['window_over_critical_path']:.2f} | {v['window_over_no_wait']:.3f} "
                    f"| {_opened(v['connections_opened_after_key'])} |"
                )
        if c["case"]["kind"] == "plans":
            lines += [
                "",
                f"**{c['case']['name']}** ({c['case']['plans']} plans of {c['backends']} backends + {c['consumers']} "
                f"consumers, one stand-in each, keys reset together; load {_load(c)}):",
                "",
                "| plan | alone median | together median | together / alone | together / CP |",
                "|---|---|---|---|---|",
            ]
            for v in c["plans"]:
                lines.append(
                    f"| {v['plan']} | {ms(v['alone']['median'])} ms | {ms(v['together']['median'])} ms "
                    f"| {v['together_over_alone']:.3f} | {v['window_over_critical_path']:.2f} |"
                )
    for c in results["cases"]:
        if c["case"]["kind"] == "service":
            w, lib, lag = c["service"]["window"], c["library"]["window"], c["service"]["final_event_after_window"]
            lines += [
                "",
                f"**{c['case']['name']}** (the headline plan through `rotator serve`: arm with the API, POST the key, "
                f"follow the SSE stream; load {_load(c)}): window as the API reports it {ms(w['median'])} ms "
                f"[{ms(w['p10'])}-{ms(w['p90'])}] = {c['window_over_critical_path']:.2f} x critical path, "
                f"{c['window_over_library']:.3f} x the library path's {ms(lib['median'])} ms in the same run; "
                + (
                    f"final SSE event at the client {lag['median'] * 1000:.1f} ms (max {lag['max'] * 1000:.1f}) after "
                    "the last consumer's confirming answer."
                    if lag
                    else "no final SSE event seen."
                ),
            ]
    for c in results["cases"]:
        cold = c.get("rotator", {}).get("cold_process")
        if cold:
            lines += [
                "",
                f"{c['case']['name']}, each rotation in a fresh interpreter ({cold['window']['n']} runs): window median "
                f"{ms(cold['window']['median'])} ms, key -> probe byte {cold['first_probe_byte']['median'] * 1000:.1f} ms, "
                f"peak RSS {cold['peak_rss_mb']:.0f} MB, "
                f"modules first imported after the key: {', '.join(cold['imported_after_key']) or 'none'}.",
            ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    lines += [
        "",
        "Critical path: from the injected latencies (probe + primary write and read-back + slowest other write and "
        "read-back + slowest signal + confirm). Measured floor: the same path built from each request's time measured "
        "alone, one at a time, with the same client libraries (what a perfect orchestrator could reach on this "
        "machine). Parallel floor: a bare script (no rotator code) making exactly the requests after the key, as "
        "concurrently as the dependencies allow (aiohttp, hvac and boto3 in threads), clients built and connections "
        "opened before the key: what N targets cost on this machine's one event loop, so window / parallel floor is "
        "rotator's own overhead. headline: Vault primary, AWS and .env mirrors, 10 webhook consumers signalled once every backend "
        "is written. fanout-N: Vault primary plus N targets (Vault/AWS/.env mirrors and webhook consumers that read "
        "the primary), so the critical path is the same at every N. The runbook builds its clients after the key "
        "arrives and makes the same calls (write, read back; signal, poll confirm every 50 ms) one at a time. "
        "long-wait: the headline plan, the key at once and after each wait, alternating. plans-5: five copies of the "
        "headline plan, each alone and all at once in one process, alternating. service: the headline plan through "
        "`rotator serve`'s HTTP API, alternating with the library path.",
    ]
    return "\n".join(lines) + "\n"


def _opened(per_run: list[dict[str, int]]) -> str:
    """Connections the services accepted after the key, per service, in the last run."""
    last = per_run[-1] if per_run else {}
    return ", ".join(f"{k} {v}" for k, v in sorted(last.items()) if v) or "none"
