"""A local stand-in for Adjutor's API-key auth, for the demo, the tests and the benchmark.

It serves one real endpoint, ``GET /v2/decisioning/models``, and holds exactly one
valid key at a time: `AdjutorStandIn.reset` issues a new key and revokes the old
one at once, as the "Reset app key" button in Adjutor's dashboard does.

What the real API looks like (Adjutor's public docs, docs.adjutor.io: "Decision
Model Lookup", "Authentication"; checked while writing this):

* base ``https://adjutor.lendsqr.com/v2/``, auth ``Authorization: Bearer <api key>``;
* a success is ``{"status": "success", "message": "Successful", "data": [...]}``,
  the data for this endpoint being the list of decision models (``id``,
  ``product_id``, ``version_id``, ``org_id``, ``name``, ``description``,
  ``decision_setting``, ``offer_setting``, ...);
* priced endpoints add ``"meta": {"cost": <charged>, "balance": <wallet left>}``
  (the wallet is debited on each successful priced call);
* a missing, wrong or reset ("outdated") key fails.  The docs do not show the
  error body, so the 401 here, ``{"status": "error", "message": "Invalid token"}``,
  is an approximation in the same envelope.

Beyond that it has what tests need: injected latency, an ``unavailable`` switch
(503) and loopback-only admin endpoints guarded by a token made at start::

    POST /_admin/reset        -> {"key": "<new key>"}
    GET  /_admin/stats        -> counters, the key's fingerprint (never the key)
    POST /_admin/unavailable  {"unavailable": true|false}
    POST /_admin/latency      {"latency": <seconds>}

Run as a process (``python -m rotator.testing.adjutor --port 0 --ready-file PATH``)
it writes ``{"url", "admin_token", "key", "pid"}`` to the ready file (mode 0600)
once it listens, and stops cleanly on SIGTERM or SIGINT.  It never logs keys:
the request log is off.
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import signal
import string
import sys
import threading
import time
from types import TracebackType
from typing import Any

from rotator.secret import fingerprint
from rotator.testing._http import JsonHandler, LoopbackServer, write_ready_file

MODELS_PATH = "/v2/decisioning/models"
ADMIN_HEADER = "X-Admin-Token"
KEY_PREFIX = "sk_test_"
KEY_LENGTH = 40
_ALPHANUMERIC = string.ascii_letters + string.digits

DEMO_MODELS: list[dict[str, Any]] = [
    {
        "id": 1,
        "product_id": None,
        "version_id": 1,
        "org_id": 1,
        "name": "Demo model",
        "description": "rotator stand-in",
        "decision_setting": {
            "karma": {"required": True, "sequence": 1, "continue_on_failure": False, "pre_offer": True},
            "scoring": {"minimum": 50, "required": True, "sequence": 2, "continue_on_failure": False},
        },
        "offer_setting": [],
    }
]


def new_key() -> str:
    """A fresh test key: ``sk_test_`` and 40 random letters and digits."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(KEY_LENGTH))


class _StandInHandler(JsonHandler):
    server_version = "AdjutorStandIn/1"
    server: _StandInServer

    def do_GET(self) -> None:
        self.read_body()
        path = self.path.split("?", 1)[0]
        standin = self.server.standin
        if path == MODELS_PATH:
            status, body = standin._serve_models(self.headers.get("Authorization"))
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
            self.send_json(status, body, headers)
        elif path == "/_admin/stats":
            if self._admin_allowed():
                self.send_json(200, standin.stats())
        else:
            self.send_json(404, {"status": "error", "message": "Not found"})

    def do_POST(self) -> None:
        data = self.read_json()
        path = self.path.split("?", 1)[0]
        standin = self.server.standin
        if not path.startswith("/_admin/"):
            self.send_json(404, {"status": "error", "message": "Not found"})
            return
        if not self._admin_allowed():
            return
        if path == "/_admin/reset":
            self.send_json(200, {"key": standin.reset()})
        elif path == "/_admin/unavailable":
            if not isinstance(data, dict) or not isinstance(data.get("unavailable"), bool):
                self.send_json(400, {"error": 'body must be {"unavailable": true|false}'})
                return
            standin.unavailable = data["unavailable"]
            self.send_json(200, {"unavailable": standin.unavailable})
        elif path == "/_admin/latency":
            value = data.get("latency") if isinstance(data, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
                self.send_json(400, {"error": 'body must be {"latency": <0..60 seconds>}'})
                return
            standin.latency = float(value)
            self.send_json(200, {"latency": standin.latency})
        else:
            self.send_json(404, {"error": "no such admin endpoint"})

    def _admin_allowed(self) -> bool:
        if not self.client_is_loopback():
            self.send_json(403, {"error": "admin endpoints answer loopback clients only"})
            return False
        given = self.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.server.standin.admin_token.encode()):
            self.send_json(401, {"error": f"missing or wrong {ADMIN_HEADER}"})
            return False
        return True


class _StandInServer(LoopbackServer):
    def __init__(self, host: str, port: int, standin: AdjutorStandIn) -> None:
        self.standin = standin
        super().__init__(host, port, _StandInHandler)


class AdjutorStandIn:
    """Adjutor's key auth on a local port.  Exactly one key is valid at any time.

    Usable as a context manager (``with AdjutorStandIn() as api: ...``).  Counters
    (`requests`, `authorized`, `unauthorized`, `unavailable_served`, `resets`) count
    calls to the API endpoint and change only under `lock`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        cost: float = 0.0,
        initial_key: str | None = None,
        *,
        balance: float = 100_000.0,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.cost = cost
        self.balance = balance
        self.unavailable = False
        self.admin_token = secrets.token_urlsafe(32)
        self.lock = threading.Lock()
        self.requests = 0
        self.authorized = 0
        self.unauthorized = 0
        self.unavailable_served = 0
        self.resets = 0
        self.last_reset_at: float | None = None
        self._key = initial_key if initial_key is not None else new_key()
        self._server: _StandInServer | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> AdjutorStandIn:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _StandInServer(self.host, self.port, self)
        self.port = int(self._server.server_address[1])
        self._server.start_background("adjutor-standin")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AdjutorStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.url

    @property
    def models_url(self) -> str:
        return f"{self.url}{MODELS_PATH}"

    # -- the key ----------------------------------------------------------
    @property
    def current_key(self) -> str:
        """The one valid key (for tests and the demo; never logged)."""
        with self.lock:
            return self._key

    def reset(self) -> str:
        """Issue a new key and revoke the old one at once; return the new key."""
        key = new_key()
        with self.lock:
            self._key = key
            self.resets += 1
            self.last_reset_at = time.time()
        return key

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "authorized": self.authorized,
                "unauthorized": self.unauthorized,
                "unavailable_served": self.unavailable_served,
                "resets": self.resets,
                "last_reset_at": self.last_reset_at,
                "key_fingerprint": fingerprint(self._key),
                "balance": self.balance,
                "cost": self.cost,
                "latency": self.latency,
                "unavailable": self.unavailable,
            }

    # -- the API ----------------------------------------------------------
    def _serve_models(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if self.latency > 0:
            time.sleep(self.latency)
        given = _bearer(authorization)
        with self.lock:
            self.requests += 1
            if self.unavailable:
                self.unavailable_served += 1
                return 503, {"status": "error", "message": "Service temporarily unavailable"}
            valid = given is not None and hmac.compare_digest(given.encode(), self._key.encode())
            if not valid:
                self.unauthorized += 1
                return 401, {"status": "error", "message": "Invalid token"}
            self.authorized += 1
            self.balance -= self.cost
            meta = {"cost": self.cost, "balance": self.balance}
        return 200, {"status": "success", "message": "Successful", "data": DEMO_MODELS, "meta": meta}


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rotator.testing.adjutor", description="A local stand-in for Adjutor's API-key auth."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help="write {url, admin_token, key, pid} here (mode 0600) once listening")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each API call")
    parser.add_argument("--cost", type=float, default=0.0, help="wallet charge per successful call")
    parser.add_argument("--balance", type=float, default=100_000.0, help="starting wallet balance")
    parser.add_argument(
        "--initial-key-env", metavar="NAME", help="take the first key from this environment variable (not argv)"
    )
    args = parser.parse_args(argv)

    initial_key = None
    if args.initial_key_env:
        initial_key = os.environ.get(args.initial_key_env)
        if not initial_key:
            parser.error(f"environment variable {args.initial_key_env} is not set")

    # Block the stop signals before any thread starts (threads inherit the mask),
    # then wait for them synchronously: no handler runs inside lock-holding code.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    standin = AdjutorStandIn(args.host, args.port, args.latency, args.cost, initial_key, balance=args.balance)
    standin.start()
    try:
        if args.ready_file:
            write_ready_file(
                args.ready_file,
                {
                    "url": standin.url,
                    "admin_token": standin.admin_token,
                    "key": standin.current_key,
                    "pid": os.getpid(),
                },
            )
        print(f"adjutor stand-in listening on {standin.url}", file=sys.stderr, flush=True)
        signal.sigwait(stop_signals)
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
