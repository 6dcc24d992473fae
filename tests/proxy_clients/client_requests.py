"""A Python `requests` consumer of `rotator proxy`: calls until STOP_FILE exists, alternating GET
and POST, one line per call to OUT_FILE: "<status> <method> <id> <seconds> <end, Unix time> <retry-after or ->"."""

import os
import sys
import time

import requests

base, out_file, stop_file, prefix = sys.argv[1:5]
session = requests.Session()
n = 0
with open(out_file, "a", buffering=1) as out:
    while not os.path.exists(stop_file):
        n += 1
        post = n % 2 == 0
        rid = f"{prefix}-{n}"
        started = time.perf_counter()
        try:
            if post:
                r = session.post(
                    f"{base}/v2/decisioning/models", json={"id": rid}, headers={"X-Request-Id": rid}, timeout=60
                )
            else:
                r = session.get(f"{base}/v2/decisioning/models", headers={"X-Request-Id": rid}, timeout=60)
            status, retry = str(r.status_code), r.headers.get("Retry-After", "-")
        except requests.RequestException as exc:
            status, retry = "ERR", type(exc).__name__
        out.write(
            f"{status} {'POST' if post else 'GET'} {rid} {time.perf_counter() - started:.4f} {time.time():.3f} {retry}\n"
        )
        time.sleep(0.005)
