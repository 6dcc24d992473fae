"""A demo service that lives on the Adjutor key: it calls the API nonstop and reloads on cue.

::

    python -m rotator.demo.consumer_app --env-file .env --variable ADJUTOR_API_KEY \\
        --api http://127.0.0.1:PORT --port 0 --hmac-key-env DEMO_HOOK_KEY \\
        --pidfile consumer.pid --ready-file consumer.json [--interval 0.02] [--reload-delay 0]

It reads its key from a dotenv file and calls ``GET {api}/v2/decisioning/models``
with it every `interval` seconds over one keep-alive connection, counting the
calls that work and the calls that fail.  When the key is reset the calls start
failing; the time of the first failure and of the first success after it are
kept, so the demo can show the outage this service saw and how many of its calls
failed in it.

It reloads the key from the env file on SIGHUP, or on ``POST /reload``: a webhook
from rotator, signed as `rotator.consumer` describes, with the shared key taken
from the environment variable named by ``--hmac-key-env``.  Its JSON body's
``fingerprint`` is compared with the key read.  The other endpoints::

    GET /fingerprint  -> {"fingerprint": "<fingerprint of the key it runs on>"}
    GET /stats        -> counters (never the key)
    GET /healthz      -> {"ok": true}

The pid goes to ``--pidfile`` and ``{"url", "pid", "fingerprint"}`` to
``--ready-file`` once it listens.  SIGTERM or SIGINT stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rotator.consumer import EnvFileKey, InvalidSignature, RotatingKey, verify_webhook
from rotator.demo.consumer_calls import Caller
from rotator.secret import Secret
from rotator.testing._http import JsonHandler, LoopbackServer, write_ready_file
from rotator.testing.adjutor import MODELS_PATH


class ReloadError(Exception):
    """The key could not be read; the message never holds a value."""


def read_env_value(path: Path, variable: str) -> str | None:
    """The value of `variable` in a dotenv file (last assignment wins), or None.

    Understands ``VAR=value``, ``export VAR=value``, single or double quotes
    around the value, ``#`` comment lines and `` #`` comments after a bare value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReloadError(f"cannot read {path}: {exc.strerror}") from None
    found: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        if not sep or name.strip() != variable:
            continue
        value = value.strip()
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            for marker in (" #", "\t#"):
                cut = value.find(marker)
                if cut >= 0:
                    value = value[:cut]
            value = value.strip()
        found = value
    return found


class ConsumerApp:
    """The service: a caller thread on the API and a small HTTP server for rotator."""

    def __init__(
        self,
        env_file: Path,
        variable: str,
        api: str,
        *,
        interval: float = 0.02,
        reload_delay: float = 0.0,
        hmac_key: bytes | None = None,
        timeout: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        hold: float | None = None,
    ) -> None:
        self.env_file = env_file
        self.variable = variable
        self.interval = interval
        self.reload_delay = reload_delay
        self.timeout = timeout
        self._hmac_key = hmac_key
        parts = urlsplit(api)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--api must be an http(s) URL, got {api!r}")
        self._path = parts.path.rstrip("/") + MODELS_PATH
        self._host, self._port = host, port

        self.lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._secret = self._read_key()
        self.reloads = 0
        self.reload_errors = 0
        self.webhooks_rejected = 0
        self.last_reload: dict[str, Any] | None = None
        self._server: _ConsumerServer | None = None
        # --hold: calls go through rotator.consumer_http's hold-and-retry auth (httpx), which
        # reads the key from the env file itself and holds a refused call until it changes.
        self.hold = hold
        self._rotating: RotatingKey | None = None
        if hold is not None:
            self._rotating = RotatingKey(EnvFileKey(env_file, variable), hold=hold)
        # The caller reads the key under `lock`, as `reload` replaces it.
        self._caller = Caller(
            parts,
            self._path,
            interval=interval,
            timeout=timeout,
            lock=self.lock,
            key=lambda: self._secret,
            rotating=self._rotating,
        )

    # -- key --------------------------------------------------------------
    def _read_key(self) -> Secret:
        value = read_env_value(self.env_file, self.variable)
        if value is None or not value.strip():
            raise ReloadError(f"{self.variable} is not set in {self.env_file}")
        return Secret(value.strip())

    @property
    def fingerprint(self) -> str:
        with self.lock:
            return self._secret.fingerprint

    def reload(self, source: str, expected: str | None = None) -> dict[str, Any]:
        """Read the key again (after `reload_delay`) and run on it from the next call."""
        with self._reload_lock:
            if self.reload_delay > 0:
                time.sleep(self.reload_delay)
            try:
                secret = self._read_key()
            except ReloadError as exc:
                with self.lock:
                    self.reload_errors += 1
                    self.last_reload = {"source": source, "at": time.time(), "error": str(exc)}
                raise
            with self.lock:
                changed = secret != self._secret
                self._secret = secret
                self.reloads += 1
                result: dict[str, Any] = {
                    "source": source,
                    "at": time.time(),
                    "fingerprint": secret.fingerprint,
                    "changed": changed,
                    "expected": expected,
                    "matches": expected is None or expected == secret.fingerprint,
                }
                self.last_reload = result
        if self._rotating is not None:
            self._rotating.notify()
        _log(f"reloaded ({source}): fingerprint {secret.fingerprint}{'' if changed else ' (unchanged)'}")
        return result

    def reload_quietly(self, source: str) -> None:
        try:
            self.reload(source)
        except ReloadError as exc:
            _log(f"reload ({source}) failed: {exc}")

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "fingerprint": self._secret.fingerprint,
                **self._caller.as_dict(),
                "reloads": self.reloads,
                "reload_errors": self.reload_errors,
                "webhooks_rejected": self.webhooks_rejected,
                "last_reload": dict(self.last_reload) if self.last_reload else None,
                "interval": self.interval,
                "reload_delay": self.reload_delay,
                "hold": self._caller.hold_stats(),
            }

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        self._server = _ConsumerServer(self._host, self._port, self)
        self._server.start_background("consumer-http")
        self._caller.start()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.url

    def stop(self) -> None:
        self._caller.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- webhook ----------------------------------------------------------
    def handle_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if self._hmac_key is None:
            return 503, {"error": "webhook reload is not configured (no HMAC key in the environment)"}
        try:
            verify_webhook(self._hmac_key, headers, body)
        except InvalidSignature as exc:
            with self.lock:
                self.webhooks_rejected += 1
            return 401, {"error": f"invalid signature: {exc}"}
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        expected = data.get("fingerprint") if isinstance(data, dict) else None
        if expected is not None and not isinstance(expected, str):
            return 400, {"error": "fingerprint must be a string"}
        try:
            result = self.reload("webhook", expected)
        except ReloadError as exc:
            return 500, {"reloaded": False, "error": str(exc)}
        answer = {"reloaded": True, **{k: result[k] for k in ("fingerprint", "expected", "matches", "changed")}}
        return (200 if result["matches"] else 409), answer


class _ConsumerHandler(JsonHandler):
    server: _ConsumerServer

    def do_GET(self) -> None:
        self.read_body()
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/fingerprint":
            self.send_json(200, {"fingerprint": app.fingerprint})
        elif path == "/stats":
            self.send_json(200, app.stats())
        elif path == "/healthz":
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "not found"})

    def do_HEAD(self) -> None:
        """rotator's arm asks `HEAD /reload`: the endpoint exists (a 4xx/5xx would be a warning)."""
        self.read_body()
        found = self.path.split("?", 1)[0] in ("/reload", "/fingerprint", "/stats", "/healthz")
        self.send_response(204 if found else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path.split("?", 1)[0] != "/reload":
            self.send_json(404, {"error": "not found"})
            return
        status, answer = self.server.app.handle_webhook(dict(self.headers.items()), body)
        self.send_json(status, answer)


class _ConsumerServer(LoopbackServer):
    def __init__(self, host: str, port: int, app: ConsumerApp) -> None:
        self.app = app
        super().__init__(host, port, _ConsumerHandler)


def _hold_stats(rotating: RotatingKey) -> dict[str, Any]:
    """What the hold-and-retry helper did: calls held, the longest hold, retries, timeouts."""
    s = rotating.stats()
    return {
        "held": s.held,
        "longest_hold": round(s.longest_hold, 4),
        "total_hold": round(s.total_hold, 4),
        "retries": s.retries,
        "timeouts": s.timeouts,
    }


def _log(message: str) -> None:
    print(f"consumer[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rotator.demo.consumer_app", description="A demo service that uses the Adjutor key."
    )
    parser.add_argument("--env-file", type=Path, required=True, help="dotenv file holding the key")
    parser.add_argument("--variable", default="ADJUTOR_API_KEY", help="the key's variable in the env file")
    parser.add_argument("--api", required=True, help="Adjutor base URL (the stand-in's url)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--hmac-key-env", default="DEMO_HOOK_KEY", help="env var holding the webhook HMAC key")
    parser.add_argument("--pidfile", type=Path)
    parser.add_argument("--ready-file", type=Path, help="write {url, pid, fingerprint} here once listening")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between API calls")
    parser.add_argument("--reload-delay", type=float, default=0.0, help="seconds a reload takes (simulated)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per API call")
    parser.add_argument(
        "--hold",
        type=float,
        default=None,
        help="call through rotator.consumer_http's hold-and-retry auth: hold a refused call up to this many"
        " seconds for a new key in the env file, then retry it once",
    )
    args = parser.parse_args(argv)
    if args.interval < 0 or args.reload_delay < 0 or args.timeout <= 0:
        parser.error("--interval and --reload-delay must be >= 0, --timeout > 0")

    hook_key = os.environ.get(args.hmac_key_env)
    if not hook_key:
        _log(f"{args.hmac_key_env} is not set: POST /reload is refused (503); SIGHUP still reloads")

    # Block the signals before any thread starts (threads inherit the mask) and
    # take them synchronously below, so no handler interrupts lock-holding code.
    handled = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    try:
        app = ConsumerApp(
            args.env_file,
            args.variable,
            args.api,
            interval=args.interval,
            reload_delay=args.reload_delay,
            hmac_key=hook_key.encode() if hook_key else None,
            timeout=args.timeout,
            host=args.host,
            port=args.port,
            hold=args.hold,
        )
    except (ReloadError, ValueError) as exc:
        _log(f"cannot start: {exc}")
        return 2
    app.start()
    pid = os.getpid()
    try:
        if args.pidfile:
            args.pidfile.write_text(f"{pid}\n")
        if args.ready_file:
            write_ready_file(args.ready_file, {"url": app.url, "pid": pid, "fingerprint": app.fingerprint})
        _log(f"listening on {app.url}, calling {args.api} every {args.interval}s, fingerprint {app.fingerprint}")
        while True:
            sig = signal.sigwait(handled)
            if sig != signal.SIGHUP:
                break
            threading.Thread(target=app.reload_quietly, args=("sighup",), daemon=True).start()
    finally:
        app.stop()
        if args.pidfile:
            with contextlib.suppress(OSError):
                if args.pidfile.read_text().strip() == str(pid):
                    args.pidfile.unlink()
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
