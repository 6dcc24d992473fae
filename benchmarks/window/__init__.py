"""Benchmark the revocation window: rotator against the critical path, a sequential runbook
and a bare parallel script.

    python -m benchmarks.window            # full run (about 25 min on 2 cores: long-wait waits 60 s and 300 s)
    python -m benchmarks.window --quick    # fewer repetitions, one 60 s wait (about 5-9 min)
    python -m benchmarks.window --smoke    # the headline case once, 5 ms latency: does it still run?

What it does, all on loopback:

* starts, in two child processes (so their CPU is not the rotator's; `child`): the Adjutor
  stand-in (probe), the Vault-protocol double, moto's server (AWS), and N webhook
  consumers (one asyncio process, one port each) whose ``/fingerprint`` reports the new
  key's fingerprint `reload_delay` seconds after the reload notice arrived.  Every request
  to each of them is answered after an injected latency; the .env files get the same
  latency per read and per write (benchmarks/_latent.py);
* per case (`cases`), alternating in this process: (a) rotator (`run_rotator`): a
  `RotationState` armed with `rotator.pipeline.arm` before the reset (not timed) and
  rotated with `rotator.pipeline.rotate`, or through an `ArmedSession` as `rotator rotate`
  and the service do; window = key received -> last consumer confirmed, as the report
  measures it; (b) a sequential runbook script (`run_runbook`) with the same client
  libraries (httpx, hvac, boto3), building its clients after the key arrives, making the
  same calls one after another; and, where the case asks, (c) the parallel floor
  (`parallel_floor`): the same requests as concurrently as their dependencies allow, bare
  (aiohttp, hvac and boto3 in threads), clients warmed before the key;
* computes the critical path from the injected latencies and from each request timed
  alone (`critical_path`), and the time from the key being received to the first bytes
  of the probe request at the stand-in;
* writes benchmarks/results/latest.json, and latest.md rendered from that JSON alone by
  `report.render_tables` (``--smoke``: smoke.json and smoke.md, never latest.*).

The modules import nothing private from rotator or its plugins: they use what a plugin
author or an operator's script could.
"""
