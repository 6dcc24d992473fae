"""A local stand-in for Adjutor's API-key auth, for the demo, the tests and the benchmark.

It serves one real endpoint, ``GET /v2/decisioning/models``, and holds exactly one
valid key at a time: `AdjutorStandIn.reset` issues a new key and revokes the old
one at once, as the "Reset app key" button in Adjutor's dashboard does.

An organisation may have several apps, each with its own key ("Each app
represents a unique API identity with its own credentials"): `add_app` makes
another, `reset(app)` revokes only that app's key, and the API accepts every
app's current key and says whose in ``meta.app``.  Each app may call a set of
API services (paths; one ending in ``/`` means every path under it;
`add_app(paths=...)`); any other service answers that app 403.  A stand-in made the single-app way has one unnamed app and
answers exactly as before (no ``meta.app``).

What the real API looks like (Adjutor's public docs, docs.adjutor.io: "Decision
Model Lookup", "Authentication"; checked while writing this):

* base ``https://adjutor.lendsqr.com/v2/``, auth ``Authorization: Bearer <api key>``;
* a success is ``{"status": "success", "message": "Successful", "data": [...]}``,
  the data for this endpoint being the list of decision models (``id``,
  ``product_id``, ``version_id``, ``org_id``, ``name``, ``description``,
  ``decision_setting``, ``offer_setting``, ...);
* priced endpoints add ``"meta": {"cost": <charged>, "balance": <wallet left>}``
  (the wallet is debited on each successful priced call);
* a missing, wrong or reset ("outdated") key fails ("Generating your API key");
  errors are an HTTP status and a JSON body with ``message`` (text), ``status``
  (the HTTP status, a number) and ``error_code`` ("Errors": "rely on the HTTP
  status code alone").  The docs show no refusal's body, so the 401 here,
  ``{"status": 401, "message": "Invalid token"}``, is assumed in those fields;
  `refusal` answers another status and body instead (a 403, an HTML page), to show
  rotator does not depend on it.
  Each assumption is listed, marked documented or assumed, in docs/testing/doubles.md.

Beyond that it has what tests need: injected latency, an ``unavailable`` switch
(503) and loopback-only admin endpoints guarded by a token made at start::

    POST /_admin/reset        -> {"key": "<new key>"}   ({"app": NAME}: that app's key)
    POST /_admin/apps         {"name": NAME, "paths": [...] | null} -> {"app", "key"}
    GET  /_admin/stats        -> counters, the keys' fingerprints (never a key)
    GET  /_admin/posts        -> {"executed": {X-Request-Id: times}, "mismatched": N}

A POST to an API path is a call that acts: answered as a GET is, and when
authorized counted as executed under its ``X-Request-Id`` (the proxy's tests
check each was executed exactly once, and its JSON body's ``id`` unchanged).
    POST /_admin/unavailable  {"unavailable": true|false}
    POST /_admin/latency      {"latency": <seconds>}

Run as a process (``python -m rotator.testing.adjutor --port 0 --ready-file PATH``)
it writes ``{"url", "admin_token", "key", "pid"}`` (and ``"apps": {name: key}``
with ``--app NAME[=PATH,...]``) to the ready file (mode 0600)
once it listens, and stops cleanly on SIGTERM or SIGINT.  It never logs keys:
the request log is off.
"""

from __future__ import annotations

import hmac
import secrets
import string
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rotator.secret import fingerprint
from rotator.testing._http import LoopbackServer, Served
from rotator.testing.adjutor_http import ADMIN_HEADER as ADMIN_HEADER  # re-exported, as the HTTP side's classes
from rotator.testing.adjutor_http import StandInHandler as StandInHandler
from rotator.testing.adjutor_http import StandInServer as StandInServer

MODELS_PATH = "/v2/decisioning/models"
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


@dataclass
class App:
    """One app of the organisation: its own key, and the API services it may call.

    `paths` are the services' paths: ``/v2/decisioning/models`` is that path, a
    path ending in ``/`` (``/v2/verification/karma/``) every path under it.  None: every
    service the stand-in serves.  `name` None is the unnamed app of a stand-in
    made the single-app way, whose answers look exactly as they always have.
    """

    name: str | None
    key: str
    paths: frozenset[str] | None = None
    authorized: int = 0
    forbidden: int = 0
    resets: int = 0
    last_reset_at: float | None = None

    def may_call(self, service: str) -> bool:
        return self.paths is None or service in self.paths


class AdjutorStandIn(Served):
    """Adjutor's key auth on a local port.  Each app holds exactly one valid key.

    Made the single-app way (the default) it has one unnamed app: exactly one key
    is valid at any time and `reset` replaces it.  `add_app` adds apps to the
    organisation, each its own key: resetting one revokes only that one's key,
    and the API accepts any app's current key, saying which app in ``meta.app``.

    Usable as a context manager (``with AdjutorStandIn() as api: ...``).  Counters
    (`requests`, `authorized`, `unauthorized`, `forbidden`, `unavailable_served`,
    `resets`) count calls to the API and change only under `lock`.
    """

    thread_name = "adjutor-standin"
    server_class: type[StandInServer] = StandInServer

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        cost: float = 0.0,
        initial_key: str | None = None,
        *,
        balance: float = 100_000.0,
        app: str | None = None,
        paths: Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.cost = cost
        self.balance = balance
        self.unavailable = False
        # (status, body) for a wrong or revoked key instead of the 401 above; a str body goes as text/html
        self.refusal: tuple[int, Any] | None = None
        self.admin_token = secrets.token_urlsafe(32)
        self.lock = threading.Lock()
        self.requests = 0
        self.authorized = 0
        self.unauthorized = 0
        self.forbidden = 0
        self.unavailable_served = 0
        self.resets = 0
        self.last_reset_at: float | None = None
        self.posts: dict[str, int] = {}  # X-Request-Id -> POSTs executed with it (each should be 1)
        self.post_mismatches = 0  # POSTs whose JSON body's "id" is not their X-Request-Id (a body changed on the way)
        self._serving: list[str | None] = []  # the bearer token of each API call being answered now
        self.services: set[str] = {MODELS_PATH}  # what the API serves (paths of every app, and the models)
        self._apps: list[App] = []
        self._add(app, initial_key if initial_key is not None else new_key(), paths)

    # -- lifecycle (start, stop, with, url: _http.Served) ----------------------
    def _make_server(self) -> LoopbackServer:
        server = self.server_class(self.host, self.port, self)
        self.port = int(server.server_address[1])
        return server

    @property
    def models_url(self) -> str:
        return f"{self.url}{MODELS_PATH}"

    # -- apps and their keys ----------------------------------------------
    def _add(self, name: str | None, key: str, paths: Iterable[str] | None) -> App:
        services = None if paths is None else frozenset(paths)
        app = App(name, key, services)
        with self.lock:
            if any(a.name == name for a in self._apps):
                raise ValueError(f"the organisation already has an app named {name!r}")
            self._apps.append(app)
            self.services |= services or set()
        return app

    def add_app(self, name: str, *, paths: Iterable[str] | None = None, key: str | None = None) -> str:
        """Create another app (as "Business → Apps → Create app" does); returns its key.
        `paths`: the API services it may call (None: all of them)."""
        if not name:
            raise ValueError("an added app needs a name")
        return self._add(name, key if key is not None else new_key(), paths).key

    @property
    def apps(self) -> list[str | None]:
        """The apps' names, the first (the one `current_key` and `reset()` mean) first."""
        with self.lock:
            return [a.name for a in self._apps]

    def _app(self, name: str | None) -> App:
        if name is None:
            return self._apps[0]
        for app in self._apps:
            if app.name == name:
                return app
        raise KeyError(f"no app named {name!r} (apps: {', '.join(str(a.name) for a in self._apps)})")

    def key_of(self, app: str | None = None) -> str:
        """The app's one valid key (the first app's when `app` is None); never logged."""
        with self.lock:
            return self._app(app).key

    @property
    def current_key(self) -> str:
        """The first app's one valid key (for tests and the demo; never logged)."""
        return self.key_of(None)

    def reset(self, app: str | None = None) -> str:
        """Issue the app a new key and revoke its old one at once (every other app's
        key keeps working); return the new key.  `app` None: the first app."""
        key = new_key()
        with self.lock:
            target = self._app(app)
            target.key = key
            target.resets += 1
            target.last_reset_at = self.last_reset_at = time.time()
            self.resets += 1
        return key

    def executed_post(self, request_id: str, body: Any) -> None:
        """Count an authorized POST as executed; a body ``{"id": ...}`` must name its X-Request-Id."""
        with self.lock:
            self.posts[request_id] = self.posts.get(request_id, 0) + 1
            if isinstance(body, dict) and "id" in body and body["id"] != request_id:
                self.post_mismatches += 1

    def executed_posts(self) -> dict[str, Any]:
        """``/_admin/posts``: the POSTs executed per X-Request-Id, and how many bodies changed on the way."""
        with self.lock:
            return {"executed": dict(self.posts), "mismatched": self.post_mismatches}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "requests": self.requests,
                "authorized": self.authorized,
                "unauthorized": self.unauthorized,
                "forbidden": self.forbidden,
                "unavailable_served": self.unavailable_served,
                "resets": self.resets,
                "posts_executed": sum(self.posts.values()),
                "last_reset_at": self.last_reset_at,
                "key_fingerprint": fingerprint(self._apps[0].key),
                "balance": self.balance,
                "cost": self.cost,
                "latency": self.latency,
                "unavailable": self.unavailable,
            }
            named = [a for a in self._apps if a.name is not None]
            if named:
                out["apps"] = {
                    a.name: {
                        "key_fingerprint": fingerprint(a.key),
                        "paths": sorted(a.paths) if a.paths is not None else None,
                        "authorized": a.authorized,
                        "forbidden": a.forbidden,
                        "resets": a.resets,
                        "last_reset_at": a.last_reset_at,
                    }
                    for a in named
                }
            return out

    # -- the API ----------------------------------------------------------
    def service_of(self, path: str) -> str | None:
        """The API service `path` calls (the longest that matches), None if none."""
        with self.lock:
            found = [s for s in self.services if path == s or (s.endswith("/") and path.startswith(s))]
        return max(found, key=len) if found else None

    def serving(self, key: str | None = None) -> int:
        """How many API calls are being answered now (with `key`, when given): a test waits
        for a call to be in flight (see `latency`) rather than sleeping and hoping."""
        with self.lock:
            return sum(1 for given in self._serving if key is None or given == key)

    def serve(self, service: str, authorization: str | None) -> tuple[int, Any]:
        """One API call: (status, JSON body, or a `refusal` page as text)."""
        given = _bearer(authorization)
        with self.lock:
            self._serving.append(given)
        try:
            if self.latency > 0:
                time.sleep(self.latency)
            return self._answer(service, given)
        finally:
            with self.lock:
                self._serving.remove(given)

    def _answer(self, service: str, given: str | None) -> tuple[int, Any]:
        with self.lock:
            self.requests += 1
            if self.unavailable:
                self.unavailable_served += 1
                return 503, {"status": 503, "message": "Service temporarily unavailable"}
            app = None
            if given is not None:
                # Every app's key is compared (no early exit): the time says nothing of which matched.
                matches = [a for a in self._apps if hmac.compare_digest(given.encode(), a.key.encode())]
                app = matches[0] if matches else None
            if app is None:
                self.unauthorized += 1
                return self.refusal or (401, {"status": 401, "message": "Invalid token"})
            if not app.may_call(service):
                self.forbidden += 1
                app.forbidden += 1
                return 403, {"status": 403, "message": "This app does not have access to this service"}
            self.authorized += 1
            app.authorized += 1
            self.balance -= self.cost
            meta: dict[str, Any] = {"cost": self.cost, "balance": self.balance}
            if app.name is not None:
                meta["app"] = app.name
        data: Any = DEMO_MODELS if service == MODELS_PATH else {}
        return 200, {"status": "success", "message": "Successful", "data": data, "meta": meta}


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


if __name__ == "__main__":  # the process: its options and lifetime are `adjutor_cli`'s
    from rotator.testing.adjutor_cli import main

    sys.exit(main())
