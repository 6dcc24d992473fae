"""A stand-in for Adjutor's dashboard, as far as the key reset goes, for browser tests.

Business -> Apps -> View details -> Reset app key: the button asks the server to
reset the app's key on its `AdjutorStandIn` (the old key dies at once) and copies
the new key with ``navigator.clipboard.writeText``, as Adjutor's dashboard does
("A new API Key is automatically regenerated and instantly copied to your
clipboard").  The key goes from the JSON answer to the clipboard in a script
variable: it is never put in the DOM, a URL or a log.

    with AdjutorStandIn() as api, DashboardStandIn({"Production": api}) as dash:
        page.goto(dash.url)   # then click Apps, View details, Reset app key

The reset endpoint answers only a same-origin request carrying the session
cookie the pages set (SameSite=Strict), so another page in the browser cannot
reset keys.  Nothing here is used in a real rotation.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie

from rotator.testing._http import JsonHandler, LoopbackServer, Served
from rotator.testing.adjutor import AdjutorStandIn

COOKIE = "dashboard_session"
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font: 15px system-ui, sans-serif; margin: 0; display: flex; min-height: 100vh; color: #213f7d; }
nav { width: 220px; background: #f5f7fa; padding: 16px; }
nav h2 { font-size: 12px; text-transform: uppercase; color: #545f7d; }
nav a { display: block; padding: 6px 0; color: inherit; }
main { padding: 24px; flex: 1; }
table { border-collapse: collapse; } td, th { padding: 8px 16px; border-bottom: 1px solid #ddd; text-align: left; }
button { background: #e4033b; color: white; border: 0; padding: 10px 18px; border-radius: 4px; cursor: pointer; }
#status { margin-top: 16px; }
"""

SCRIPT = """
"use strict";
const button = document.getElementById("reset-key");
const status = document.getElementById("status");
button.addEventListener("click", async () => {
  button.disabled = true;
  status.textContent = "Resetting…";
  try {
    const resp = await fetch(button.dataset.action, { method: "POST", credentials: "same-origin" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const body = await resp.json();
    await navigator.clipboard.writeText(body.key);
    status.textContent = "A new API Key has been regenerated and copied to your clipboard.";
  } catch (err) {
    status.textContent = "Could not reset the key: " + err.name;
  } finally {
    button.disabled = false;
  }
});
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · Adjutor stand-in</title><link rel=stylesheet href=/static/style.css></head>"
        "<body><nav><h2>Business</h2><a href=/business>Overview</a><a href=/business/apps>Apps</a></nav>"
        f"<main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    ).encode()


class _Handler(JsonHandler):
    server_version = "AdjutorDashboardStandIn/1"
    server: _Server

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _html(self, title: str, body: str) -> None:
        cookie = f"{COOKIE}={self.server.dashboard.session}; Path=/; HttpOnly; SameSite=Strict"
        self._send(200, _page(title, body), "text/html; charset=utf-8", {"Set-Cookie": cookie})

    def do_GET(self) -> None:
        self.read_body()
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        dash = self.server.dashboard
        if path in ("/", "/business"):
            self._html(
                "Business", "<p>Your business on Adjutor. Manage API keys under <a href=/business/apps>Apps</a>.</p>"
            )
        elif path == "/business/apps":
            rows = "".join(
                f"<tr><td>{html.escape(name)}</td><td><a href=/business/apps/{i}>View details</a></td></tr>"
                for i, name in enumerate(dash.apps)
            )
            self._html("Apps", f"<table><tr><th>App</th><th></th></tr>{rows}</table>")
        elif path.startswith("/business/apps/") and (name := dash.app_name(path.rsplit("/", 1)[1])) is not None:
            i = list(dash.apps).index(name)
            self._html(
                html.escape(name),
                "<p>API key: <code>sk_…</code> (hidden)</p>"
                f"<button id=reset-key type=button data-action=/api/apps/{i}/reset-key>Reset app key</button>"
                "<p id=status role=status></p><script src=/static/dashboard.js></script>",
            )
        elif path == "/static/dashboard.js":
            self._send(200, SCRIPT.encode(), "text/javascript; charset=utf-8")
        elif path == "/static/style.css":
            self._send(200, STYLE.encode(), "text/css; charset=utf-8")
        else:
            self._send(404, _page("Not found", ""), "text/html; charset=utf-8")

    def do_POST(self) -> None:
        self.read_body()
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        dash = self.server.dashboard
        if len(parts) != 4 or parts[:2] != ["api", "apps"] or parts[3] != "reset-key":
            self.send_json(404, {"status": "error", "message": "Not found"})
            return
        name = dash.app_name(parts[2])
        if name is None:
            self.send_json(404, {"status": "error", "message": "No such app"})
            return
        cookie = SimpleCookie(self.headers.get("Cookie", "")).get(COOKIE)
        if cookie is None or not hmac.compare_digest(cookie.value.encode(), dash.session.encode()):
            self.send_json(401, {"status": "error", "message": "Sign in first"})
            return
        if self.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            self.send_json(403, {"status": "error", "message": "Cross-site request"})
            return
        key = dash.reset(name)
        self.send_json(200, {"status": "success", "key": key})


class _Server(LoopbackServer):
    def __init__(self, host: str, port: int, dashboard: DashboardStandIn) -> None:
        self.dashboard = dashboard
        super().__init__(host, port, _Handler)


class DashboardStandIn(Served):
    """The dashboard pages for some Adjutor apps (by display name), on a loopback port.

    `apps`: display name -> `AdjutorStandIn` (each its own single-app stand-in), or
    one `AdjutorStandIn` whose named apps (`add_app`) are the organisation's apps:
    resetting one there revokes only that app's key.
    """

    thread_name = "dashboard-standin"

    def __init__(
        self, apps: Mapping[str, AdjutorStandIn] | AdjutorStandIn, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if isinstance(apps, AdjutorStandIn):
            names = [name for name in apps.apps if name is not None]
            self.apps = {name: apps for name in names}
            self._app_of: dict[str, str | None] = {name: name for name in names}
        else:
            self.apps = dict(apps)
            self._app_of = dict.fromkeys(self.apps)
        if not self.apps:
            raise ValueError("give at least one app (an AdjutorStandIn made with app=NAME, or a mapping)")
        self.host, self.port = host, port
        self.session = secrets.token_urlsafe(24)
        self.lock = threading.Lock()
        self.resets: list[tuple[str, float, float]] = []  # (app, time.time(), perf_counter()) of each click's reset

    def __repr__(self) -> str:
        return f"DashboardStandIn(apps={list(self.apps)}, url={self._server.url if self._server else None})"

    def app_name(self, index: str) -> str | None:
        names = list(self.apps)
        return names[int(index)] if index.isdigit() and int(index) < len(names) else None

    def reset(self, name: str) -> str:
        """What the button does on the server: the app's key is reset at once."""
        key = self.apps[name].reset(self._app_of[name])
        with self.lock:
            self.resets.append((name, time.time(), time.perf_counter()))
        return key

    def _make_server(self) -> LoopbackServer:
        server = _Server(self.host, self.port, self)
        self.port = int(server.server_address[1])
        return server

    def details_url(self, name: str) -> str:
        return f"{self.url}/business/apps/{list(self.apps).index(name)}"
