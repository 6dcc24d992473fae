// rotator's page: sign in, pick a plan, arm, paste the key, watch it land.
//
// The API token lives in sessionStorage (this tab only) and goes out in the
// Authorization header of each request: the browser never sends it by itself,
// so another site cannot make requests with it (no cookie, no CSRF).  Live
// progress is read with fetch() from the server-sent-events endpoint, because
// EventSource cannot send that header.  Everything shown is set with
// textContent, never parsed as HTML.  The key is read from the password field,
// the field is cleared at once, and the key is kept in no variable past the
// request that sends it.
"use strict";

(function () {
  const TOKEN = "rotator-token";
  const $ = (id) => document.getElementById(id);
  const state = { plans: [], rotation: null, follow: null, finished: false, who: null };

  // -- helpers ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function show(id, on) { $(id).hidden = !on; }

  function ms(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 10 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
  }

  function when(ts) {
    if (!ts) return "—";
    const d = new Date(ts * 1000);
    return d.toLocaleString();
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "unknown";
    const days = seconds / 86400;
    if (days >= 1) return `${days.toFixed(1)} days`;
    const hours = seconds / 3600;
    if (hours >= 1) return `${hours.toFixed(1)} hours`;
    return `${Math.round(seconds / 60)} minutes`;
  }

  const MARK = { ok: "✓", failed: "✗", warning: "!", skipped: "–", running: "…", unchanged: "✓",
                 unconfirmed: "?", conflict: "✗", drift: "✗", pending: "·", done: "✓" };
  function statusCell(status) {
    const good = status === "ok" || status === "unchanged" || status === "done";
    const cls = good ? "st-ok" : (status === "running" || status === "pending") ? "st-running"
      : status === "warning" ? "st-warning" : "st-failed";
    return el("span", { class: `status ${cls}`, "data-status": status }, `${MARK[status] || "·"} ${status}`);
  }

  // A message written for the terminal names a CLI flag; on the page, the way is on screen.
  function noFlags(text) { return String(text).replace(/\s*\(--accept-unprobed[^)]*\)/, ""); }

  class Unauthorized extends Error {}

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}` };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) throw new Unauthorized("the token was not accepted");
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    return { ok: res.ok, status: res.status, data: data || {} };
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN);
    if (state.follow) state.follow.abort();
    for (const id of ["plans-section", "armed-section", "progress-section", "history-section"]) show(id, false);
    show("signout", false);
    show("login-section", true);
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  function guard(fn) {
    return async (ev) => {
      if (ev) ev.preventDefault();
      try { await fn(ev); } catch (e) {
        if (e instanceof Unauthorized) signOut("The token was not accepted: sign in again.");
        else { console.error(e); $("plan-status").textContent = `Error: ${e.message}`; }
      }
    };
  }

  // -- sign in ---------------------------------------------------------------
  async function signIn() {
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) { $("login-error").textContent = "Enter the API token."; input.focus(); return; }
    sessionStorage.setItem(TOKEN, token);
    try {
      await loadPlans();
    } catch (e) {
      if (e instanceof Unauthorized) { signOut("That token was not accepted."); return; }
      throw e;
    }
    $("login-error").textContent = "";
    await signedIn();
  }

  // Signed in (now, or still from this tab's earlier visit): re-attach to what is running.
  async function signedIn() {
    show("login-section", false);
    show("signout", true);
    show("plans-section", true);
    show("history-section", true);
    loadHistory();
    await loadWho();
    const wanted = /^#rotation=([\w-]+)$/.exec(location.hash);
    const here = state.plans.find((p) => p.active && p.active.held_here);
    if (wanted) await attach(wanted[1]);
    else if (here) { $("plan").value = here.name; renderPlanInfo(); await attach(here.active.id); }
    else $("plan").focus();
  }

  async function loadWho() {
    const r = await api("GET", "/api/whoami");
    state.who = r.ok ? r.data : null;
    const user = state.who && state.who.user;
    show("operator-field", !user);
    $("who").textContent = user
      ? `Journaled as ${user} (named by your proxy in ${state.who.source}).`
      : "Journaled with your name (below) and your address.";
  }

  function who() {
    const name = $("operator").value.trim();
    return { reason: $("reason").value.trim(), ...(name ? { operator: name } : {}) };
  }

  // -- plans -----------------------------------------------------------------
  async function loadPlans() {
    const r = await api("GET", "/api/plans");
    if (!r.ok) throw new Error(r.data.error || `HTTP ${r.status}`);
    state.plans = r.data.plans || [];
    const select = $("plan");
    const chosen = select.value;
    select.replaceChildren(...state.plans.map((p) => el("option", { value: p.name }, p.name)));
    if (chosen && state.plans.some((p) => p.name === chosen)) select.value = chosen;
    renderPlanInfo();
  }

  function currentPlan() { return state.plans.find((p) => p.name === $("plan").value); }

  function renderPlanInfo() {
    const p = currentPlan();
    const dl = $("plan-info");
    dl.replaceChildren();
    if (!p) { dl.append(el("dt", {}, "No plans"), el("dd", {}, "The service has no plans loaded.")); return; }
    const add = (k, v, cls) => dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, v));
    if (p.description) add("What", p.description);
    add("Primary", p.primary);
    add("Backends", p.backends.map((b) => `${b.name} (${b.type})`).join(", "));
    add("Consumers", p.consumers.map((c) => `${c.name} (${c.type})`).join(", ") || "none");
    add("Fingerprint", p.fingerprint || "unknown (no journal entry yet)");
    const age = p.key_age || {};
    add("Key age", age.status === "unknown" ? "unknown: no completed rotation journaled"
      : `${ago(age.age_seconds)}${age.max_age_days ? ` (max ${age.max_age_days} days)` : ""}`,
      age.status === "overdue" ? "warn" : age.status === "due" ? "warn" : "");
    const lr = p.last_rotation;
    add("Last rotation", lr ? `${when(lr.finished_at || lr.created_at)} · ${lr.state}` +
      (lr.window_seconds !== null && lr.window_seconds !== undefined ? ` · window ${ms(lr.window_seconds)} (key received → last target done)` : "") : "never");
    const ls = p.last_sync;
    add("Last sync", ls ? `${when(ls.finished_at || ls.created_at)} · ${ls.state}` : "never");
    const lc = p.last_check;
    if (lc) add("Last drift check", `${when(lc.finished_at || lc.created_at)} · ${lc.state}`);
    const drifted = p.drifted || [];
    add("Drift", drifted.length ? `out of line: ${drifted.join(", ")}` : (Object.keys(p.drift || {}).length ? "none" : "not checked yet"),
      drifted.length ? "warn" : "");
    if (p.schedules.length) add("Schedules", p.schedules.map((s) => `${s.job} ${s.when}`).join("; "));
    renderActive(p);
    altPlanInfo(p).catch(() => {});  // alternating plans: the slots and the flows
  }

  // A rotation of this plan in progress (here or elsewhere), or one left partial.
  function renderActive(p) {
    const a = p.active;
    show("active-box", !!a);
    if (a) {
      const since = when(a.created_at);
      $("active-text").textContent = a.held_here
        ? `Rotation ${a.id} is ${a.state} in this service, armed by ${a.operator} at ${since}.`
        : `Rotation ${a.id} (${a.state}) is held by ${a.operator} — pid ${a.pid} on ${a.host}, since ${since}` +
          (a.alive ? "." : "; that process is gone.");
      show("reattach-btn", a.held_here);
      show("close-active-btn", a.state === "armed");
    }
    const left = (p.resumable || [])[0];
    show("resume-box", !a && !!left);
    if (!a && left) {
      $("resume-text").textContent = `Rotation ${left.id} (${left.state}, by ${left.operator}, ${when(left.created_at)}) ` +
        "did not reach every target: resume finishes it from the key in the primary.";
      $("resume-btn").dataset.id = left.id;
    }
  }

  async function closeActive() {
    const p = currentPlan();
    const a = p && p.active;
    if (!a) return;
    const r = await api("POST", `/api/rotations/${encodeURIComponent(a.id)}/close`, who());
    $("plan-status").textContent = r.ok ? (r.data.message || `Closed rotation ${a.id}; nothing was written.`)
      : `Not closed: ${r.data.error || r.status}`;
    if (r.status === 202) {  // asked its holder: wait until it lets go
      for (let i = 0; i < 30; i++) {
        await new Promise((res) => setTimeout(res, 1000));
        await loadPlans();
        const now = currentPlan();
        if (!now || !now.active || now.active.id !== a.id) { $("plan-status").textContent = `Closed rotation ${a.id}.`; break; }
      }
    }
    await loadPlans();
    loadHistory();
  }

  async function resumeLeft() {
    const id = $("resume-btn").dataset.id;
    if (!id) return;
    $("plan-status").textContent = `Resuming ${id} from the key in the primary…`;
    const btn = $("resume-btn");
    btn.disabled = true;
    let r;
    try { r = await api("POST", `/api/rotations/${encodeURIComponent(id)}/resume`, who()); }
    finally { btn.disabled = false; }
    if (!r.ok) { $("plan-status").textContent = `Not resumed: ${r.data.error || r.status}`; return; }
    $("plan-status").textContent = "";
    resetProgress();
    state.finished = false;
    renderReport(r.data);
    await loadPlans();
  }

  async function syncPlan(check) {
    const p = currentPlan();
    if (!p) return;
    const status = $("plan-status");
    status.textContent = check ? `Checking ${p.name} for drift…` : `Syncing ${p.name} from ${p.primary}…`;
    const r = await api("POST", `/api/plans/${encodeURIComponent(p.name)}/sync`, { check, ...who() });
    status.textContent = r.ok ? `${r.data.state}: ${r.data.message}` : `Not done: ${r.data.error || r.status}`;
    await loadPlans();
    loadHistory();
  }

  // -- arm -------------------------------------------------------------------
  async function arm() {
    const p = currentPlan();
    if (!p) return;
    if (isAlternating(p)) { $("alt-rotate-btn").focus(); return; }  // its flows have their own buttons
    const btn = $("arm-btn");
    btn.disabled = true;
    $("plan-status").textContent = `Arming ${p.name}: checking every backend and consumer…`;
    let r;
    try {
      r = await api("POST", `/api/plans/${encodeURIComponent(p.name)}/arm`, who());
    } finally { btn.disabled = false; }
    if (r.status === 409 && r.data.held_here && r.data.rotation) { await attach(r.data.rotation); return; }
    renderPreflight(r.data.preflight || []);
    if (!r.ok) {
      if (r.data.lock) await loadPlans();  // held elsewhere: say by whom, offer to close it
      const why = r.data.error || `HTTP ${r.status}`;
      $("plan-status").textContent = why.startsWith("not armed") ? `N${why.slice(1)}` : `Not armed: ${why}`;
      show("armed-section", (r.data.preflight || []).length > 0);
      $("armed-summary").textContent = "Fix what is marked failed, then arm again. Do not reset the key yet.";
      show("instruction-box", false);
      show("key-form", false);
      return;
    }
    showArmed(r.data);
  }

  // An armed rotation on screen: preflight, the dashboard steps, the paste box, Cancel, live progress.
  function showArmed(rot) {
    state.rotation = rot;
    state.finished = false;
    renderPreflight(rot.preflight || []);
    $("plan-status").textContent = `Armed: rotation ${rot.id}.`;
    $("armed-summary").textContent =
      `Rotation ${rot.id} · armed by ${rot.operator} · current fingerprint ${rot.old_fingerprint || "(none in the primary)"}`;
    $("instruction-lead").textContent = rot.instruction[0];
    $("instruction").replaceChildren(...rot.instruction.slice(1).map((s) => el("li", {}, s)));
    $("key-status").textContent = rot.last_refusal ? `Refused: ${rot.last_refusal.message}` : "";
    $("expires").textContent = rot.expires_at
      ? `This armed rotation closes itself at ${new Date(rot.expires_at * 1000).toLocaleTimeString()} if no key comes.`
      : "";
    unprobedOffer(rot.last_refusal && rot.last_refusal.probe && rot.last_refusal.probe.outcome === "unavailable"
      ? rot.last_refusal.message : null);
    show("instruction-box", true);
    show("key-form", true);
    show("armed-section", true);
    resetProgress();
    show("plans-section", false);
    follow(rot.id);
    $("key").focus();
  }

  // Re-attach to a rotation by id: armed here (paste box, Cancel), writing (live progress), or over (its report).
  async function attach(id) {
    const r = await api("GET", `/api/rotations/${encodeURIComponent(id)}`);
    if (!r.ok) { $("plan-status").textContent = `Rotation ${id}: ${r.data.error || r.status}`; return; }
    const rot = r.data;
    if (state.plans.some((p) => p.name === rot.plan)) { $("plan").value = rot.plan; renderPlanInfo(); }
    if (rot.held_here !== false && rot.state === "armed") { showArmed(rot); return; }
    if (rot.held_here !== false && rot.state === "rotating") {
      state.rotation = rot; state.finished = false;
      resetProgress(); show("progress-section", true); show("plans-section", false); follow(rot.id); return;
    }
    if (rot.report) { resetProgress(); state.finished = false; renderReport(rot.report); return; }
    $("plan-status").textContent = `Rotation ${rot.id} is ${rot.state}.`;
  }

  function renderPreflight(checks) {
    const probe = checks.find((c) => c.kind === "probe");
    const down = probe && (probe.ok !== true || (probe.warnings || []).length);
    show("probe-warning", !!down);
    $("probe-warning").textContent = down
      ? `The API is not answering normally (${[probe.detail, ...(probe.warnings || [])].join("; ")}). ` +
        "Do not reset the key until it answers: a new key cannot be verified now. During an outage you can still " +
        "write it unprobed, with an explicit confirmation."
      : "";
    $("preflight").replaceChildren(...checks.map((c) => {
      const status = c.ok === false ? "failed" : (c.ok === null || (c.warnings || []).length) ? "warning" : "ok";
      const what = c.kind === "probe" ? "API probe (where the new key is tried first)"
        : `${c.target} (${c.kind} ${c.type}${c.primary ? ", primary" : ""})`;
      const detail = [c.detail, ...(c.warnings || []).map((w) => `warning: ${w}`)].filter(Boolean).join("; ");
      return el("li", { "data-target": c.target }, statusCell(status), " ", el("strong", {}, what),
        detail ? ` — ${detail}` : "");
    }));
  }

  async function cancelArmed() {
    if (!state.rotation) return;
    const id = state.rotation.id;  // the "closed" event may arrive (and clear state.rotation) before the answer
    const r = await api("POST", `/api/rotations/${encodeURIComponent(id)}/close`, who());
    backToPlans(r.ok ? `Closed rotation ${id}; nothing was written.` : `Not closed: ${r.data.error || r.status}`);
  }

  function backToPlans(message) {
    if (state.follow) state.follow.abort();
    state.rotation = null;
    if (!state.finished) resetProgress();  // no empty table left behind
    unprobedOffer(null);
    altReset();
    show("armed-section", false);
    show("plans-section", true);
    $("plan-status").textContent = message || "";
    loadPlans().catch(() => {});
    loadHistory();
    $("plan").focus();
  }

  // -- the key ---------------------------------------------------------------
  async function keyFromClipboard() {
    // After the operator's click (the browser asks for permission once): the dashboard's reset put it there.
    let text;
    try { text = await navigator.clipboard.readText(); } catch (e) {
      $("key-status").textContent = "The browser did not allow reading the clipboard: paste the key instead.";
      return;
    }
    $("key").value = text;  // the field's value (a password field), never an attribute of the DOM
    text = "";
    await submitKey();
  }

  async function submitKey() {
    if (!state.rotation) return;
    if (state.rotation.alternating) return altSubmitKey();
    const input = $("key");
    const btn = $("rotate-btn");
    if (!input.value.trim()) { $("key-status").textContent = "Paste the new key first."; input.focus(); return; }
    btn.disabled = true;
    $("key-status").textContent = "";
    show("progress-section", true);
    let r;
    try {
      // The value goes straight into the request body; the field is emptied before the request is sent.
      const unprobed = $("accept-unprobed").checked;
      const body = JSON.stringify({ key: input.value, ...(unprobed ? { accept_unprobed: true } : {}) });
      input.value = "";
      r = await sendKey(state.rotation.id, body);
    } finally { btn.disabled = false; $("accept-unprobed").checked = false; unprobedLabel(); }
    if (r.status === 200) { renderReport(r.data.report, r.data.rotation && r.data.rotation.timeline_svg); return; }
    // Refused (or rejected): still armed, paste again.
    const msg = noFlags(r.data.error || (r.data.report && r.data.report.message) || `HTTP ${r.status}`);
    $("key-status").textContent = `Refused: ${msg}`;
    const rot = r.data.rotation;
    if (rot && rot.state !== "armed") { backToPlans(`Rotation closed: ${msg}`); return; }
    if (r.data.report && r.data.report.state === "unavailable") unprobedOffer(msg);
    input.focus();
  }

  // The way through an API outage: the same key, written without a successful probe, once confirmed.
  function unprobedOffer(why) {
    show("unprobed-box", !!why);
    if (why) why = noFlags(why);
    $("unprobed-text").textContent = why
      ? `The API could not check the key: ${why}. Paste it again to retry the probe, or, if the API is down and ` +
        "you are sure of the key, tick the box below first."
      : "";
    if (!why) $("accept-unprobed").checked = false;
    unprobedLabel();
  }

  function unprobedLabel() {
    const on = $("accept-unprobed").checked;
    $("rotate-btn").textContent = on ? "Write it WITHOUT a probe" : "Rotate";
    $("rotate-btn").classList.toggle("danger", on);
  }

  async function sendKey(id, body) {
    const res = await fetch(`/api/rotations/${encodeURIComponent(id)}/key`, {
      method: "POST", cache: "no-store", credentials: "omit", body,
      headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}`, "Content-Type": "application/json" },
    });
    if (res.status === 401) throw new Unauthorized("the token was not accepted");
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    return { status: res.status, data };
  }

  // -- live progress (server-sent events over fetch) --------------------------
  function resetProgress() {
    $("progress").tBodies[0].replaceChildren();
    $("result").replaceChildren();
    show("progress-section", false);
    show("again-btn", false);
  }

  function progressRow(key, label) {
    const body = $("progress").tBodies[0];
    let row = body.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
    if (!row) {
      row = el("tr", { "data-key": key }, el("th", { scope: "row" }, label), el("td"), el("td"), el("td"), el("td"),
        el("td"));
      body.append(row);
    }
    return row;
  }

  function onProgress(p) {
    if (p.step === "arm") return; // shown in the preflight list
    const key = p.target || p.step;
    const row = progressRow(key, p.target || p.step);
    row.cells[1].textContent = p.step;
    row.cells[2].replaceChildren(statusCell(p.status));
    if (p.seconds !== null && p.seconds !== undefined) row.cells[3].textContent = ms(p.seconds);  // a duration
    if (p.detail) row.cells[5].textContent = p.detail;
    row.dataset.status = p.status;
  }

  function stopResetCounter() {
    if (state.resetTimer) clearInterval(state.resetTimer);
    state.resetTimer = null;
    show("reset-status", false);
  }

  function startResetCounter(reset) {
    // The reset's wall time from the server; the counter runs here ("… 1.2 s ago"), on a line of its own
    // so that a refused paste's message stays readable. Screen readers hear the lead once, not each tick.
    stopResetCounter();
    $("reset-lead").textContent = "The old key stopped working — paste the new key now. ";
    const tick = () => {
      const ago = Math.max(0, Date.now() / 1000 - reset.at).toFixed(1);
      $("reset-ago").textContent = `(${ago} s ago)`;
    };
    tick();
    show("reset-status", true);
    state.resetTimer = setInterval(tick, 100);
  }

  function renderReport(report, svg) {
    if (!report || state.finished) return;
    state.finished = true;
    show("progress-section", true);
    for (const t of report.targets || []) {
      const row = progressRow(t.name, t.name + (t.primary ? " (primary)" : ""));
      row.cells[0].textContent = t.name + (t.primary ? " (primary)" : "");
      row.cells[1].textContent = `${t.kind} ${t.type}`;
      row.cells[2].replaceChildren(statusCell(t.status));
      row.cells[3].textContent = t.seconds !== null && t.seconds !== undefined ? ms(t.seconds) : "";
      row.cells[4].textContent = t.finished !== null && t.finished !== undefined ? ms(t.finished) : "";
      row.cells[5].textContent = t.detail || "";
      row.dataset.status = t.status;
    }
    const good = report.exit_code === 0;
    const out = $("result");
    out.replaceChildren(
      el("h3", { id: "result-h", tabindex: "-1", class: good ? "st-ok" : "st-failed" },
        good ? "Done: every target holds the new key" : `Not finished: ${report.state}`),
      el("p", { class: good ? "window" : "window not-done", title: "key received → last target done" },
        good ? "Window (key received → last target done): " : "Window so far (key received → last target tried; not every target holds the key): ",
        el("strong", { id: "window" }, ms(report.window_seconds))),
      el("p", {}, report.message),
      el("p", {}, `Fingerprint ${report.old_fingerprint || "—"} → ${report.new_fingerprint || "—"} · rotation ${report.id}`),
    );
    if (report.old_key_check) {
      // outcome "accepted" means the check passed: the API refused the old key.
      out.append(el("p", {}, `Old key check: ${report.old_key_check.detail}`));
    }
    for (const w of report.warnings || []) out.append(el("p", { class: "warn" }, `Warning: ${w}`));
    stopResetCounter();
    if (report.outage_seconds !== null && report.outage_seconds !== undefined) {
      out.append(el("p", { class: "outage" }, "Outage: ", el("strong", { id: "outage" }, ms(report.outage_seconds)),
        ` (reset seen → last target done) = operator's share ${ms(report.operator_seconds)} + window ${ms(report.window_seconds)}`));
    }
    const refused = report.refused_keys || [];
    if (refused.length) {
      out.append(el("p", {}, `Refused pastes before the accepted key: ${refused.length} (not in the window: ${refused.map((r) => r.why).join("; ")})`));
    }
    if (svg) {
      // Built by rotator.timeline on the server (escaped text, shapes only); parsed as SVG, never as HTML.
      const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
      out.append(el("figure", { id: "timeline" }, document.importNode(doc.documentElement, true)));
    }
    altReport(report, out);
    show("armed-section", false);
    show("again-btn", true);
    state.rotation = null;
    $("result-h").focus();
    loadHistory();
  }

  async function follow(id) {
    if (state.follow) state.follow.abort();
    const ctl = new AbortController();
    state.follow = ctl;
    let last = 0;
    for (let attempt = 0; attempt < 20 && !ctl.signal.aborted; attempt++) {
      try {
        const res = await fetch(`/api/rotations/${encodeURIComponent(id)}/events`, {
          headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}`, "Last-Event-ID": String(last) },
          signal: ctl.signal, cache: "no-store", credentials: "omit",
        });
        if (!res.ok) return;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const ev = { type: "message", data: "" };
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) ev.type = line.slice(7);
              else if (line.startsWith("data: ")) ev.data += line.slice(6);
              else if (line.startsWith("id: ")) last = parseInt(line.slice(4), 10) || last;
            }
            if (ev.type === "end") return;
            if (ev.data) handleEvent(ev.type, JSON.parse(ev.data));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  function handleEvent(type, data) {
    if (altHandleEvent(type, data)) return;
    if (type === "progress") { show("progress-section", true); onProgress(data); }
    else if (type === "key") {
      show("progress-section", true);
      const row = progressRow("key", "key");
      row.cells[1].textContent = "key";
      row.cells[2].replaceChildren(statusCell("ok"));
      row.cells[5].textContent = `received, fingerprint ${data.fingerprint}`;
      stopResetCounter();
    } else if (type === "reset") startResetCounter(data.reset);
    else if (type === "refused") {
      $("key-status").textContent = `Refused: ${noFlags(data.message)}`;
    } else if (type === "report") renderReport(data.report, data.timeline_svg);
    else if (type === "closed" && !state.finished) {
      stopResetCounter();
      backToPlans(`The armed rotation was closed: ${data.reason}. Nothing was written.`);
    }
  }

  // -- alternating plans (issue 11): two apps, active and standby ---------------
  // Kept apart from the single-app flow: the hooks above call these by name only.
  // A flow starts at arm (the promote needs no key); the page then shows which app
  // to reset and why no consumer is affected, Roll back while it waits for that key,
  // and the flow's steps as they land (promote done, re-key done, revoked proven).
  const ALT_STEP = {
    "promote ok": "promote: the primary's slots swapped",
    "promote done": "promote done: every target holds the new active key",
    "rollback ok": "roll back: the primary's slots swapped back",
    "rollback done": "roll back done: every target holds the previous key again",
    "rekey ok": "re-key done: the new key is stored as the standby",
    "revoked ok": "revoked: the reset app's previous key is proven refused",
    "revoked still_works": "the previous key still works: that app was not reset",
    "rekey refused": "key refused: nothing was written",
    "rekey active_reset": "the ACTIVE app was reset",
  };

  function isAlternating(p) { return Boolean(p && p.strategy === "alternating"); }

  async function altPlanInfo(p) {
    const on = isAlternating(p);
    show("alt-plan", on);
    show("arm-btn", !on);
    show("alt-choice", false);
    if (!on) return;
    $("alt-slots").tBodies[0].replaceChildren();
    $("alt-next").textContent = "Reading both slots and probing both keys…";
    const r = await api("GET", `/api/plans/${encodeURIComponent(p.name)}/slots`);
    if (currentPlan() !== p) return;
    if (!r.ok) { $("alt-next").textContent = `Slots unknown: ${r.data.error || r.status}`; return; }
    altRenderSlots(r.data);
  }

  function altAge(seconds) { return seconds === null || seconds === undefined ? "unknown" : ago(seconds); }

  function altRenderSlots(st) {
    state.altSlots = st;
    $("alt-slots").tBodies[0].replaceChildren(...["active", "standby"].map((who) => {
      const s = st[who] || {};
      const works = s.works === true ? "yes, on every URL" : s.works === false ? `NO: ${s.problem || "refused"}` : "not probed";
      return el("tr", { "data-slot": who }, el("th", { scope: "row" }, who),
        el("td", { class: "alt-app" }, s.app + (s.app_recorded === false ? " (first use: the plan lists it first)" : "")),
        el("td", {}, s.fingerprint || "(empty)"), el("td", {}, altAge(s.age_s)),
        el("td", { "data-works": String(s.works) }, works));
    }));
    $("alt-next").textContent = `Next rotation: ${st.next}` + (st.standby_problem ? ` (${st.standby_problem})` : "");
    $("alt-left").replaceChildren(...(st.left || []).map((l) => el("li", {}, `Left: ${l}`)));
    show("alt-plan-rollback-btn", Boolean(st.rollback_possible));
  }

  async function altArm(flow, choice) {
    const p = currentPlan();
    if (!p) return;
    show("alt-choice", false);
    $("plan-status").textContent = `Arming ${p.name} (${flow}): checking every backend, consumer and both keys…`;
    const body = { ...who(), flow };
    if (choice) body.choice = choice;
    const r = await api("POST", `/api/plans/${encodeURIComponent(p.name)}/arm`, body);
    renderPreflight(r.data.preflight || []);
    if (!r.ok) {
      $("plan-status").textContent = `Not started: ${r.data.error || `HTTP ${r.status}`}`;
      if (r.data.choices) {  // an incident without a valid standby: the operator chooses
        $("alt-choice-line").textContent = r.data.error;
        show("alt-choice", true);
        $("alt-standby-first-btn").focus();
      }
      return;
    }
    state.rotation = r.data;
    state.finished = false;
    $("plan-status").textContent = `Started: rotation ${r.data.id}.`;
    $("armed-summary").textContent = `Rotation ${r.data.id} · ${flow}`;
    $("key-status").textContent = "";
    $("alt-steps").replaceChildren();
    altRenderArmed(r.data.alternating);
    show("instruction-box", false);
    show("armed-section", true);
    resetProgress();
    show("plans-section", false);
    follow(r.data.id);
    $("armed-h").focus();
  }

  function altRenderArmed(info) {
    if (!info) return;
    show("alt-armed", true);
    $("alt-plan-line").textContent = info.plan_line;
    altRenderAsk(info.asking, info);
  }

  function altRenderAsk(ask, info) {
    show("alt-ask", Boolean(ask));
    show("key-form", Boolean(ask));
    if (!ask) { show("alt-rollback-btn", false); return; }
    $("alt-ask-h").textContent = `Reset ${ask.app} in the Adjutor dashboard` +
      (ask.slot === "standby" ? " (its new key becomes the standby)" : " (its new key becomes the ACTIVE key)");
    $("alt-because").textContent = ask.safe ? `Why no consumer is affected: ${ask.because}.` : `Note: ${ask.because}.`;
    $("alt-instruction").textContent = `Adjutor dashboard → ${ask.instruction}`;
    if (ask.refused) $("key-status").textContent = `Refused: ${ask.refused}`;
    show("alt-rollback-btn", Boolean(info && info.can_roll_back));
    $("expires").textContent = ask.expires_at
      ? `This rotation closes itself at ${new Date(ask.expires_at * 1000).toLocaleTimeString()} if no key comes.` : "";
  }

  function altStep(line, status) {
    $("alt-steps").append(el("li", {}, statusCell(status), " ", line));
  }

  // Returns true when the event is an alternating flow's (handled here).
  function altHandleEvent(type, data) {
    if (!state.rotation || !state.rotation.alternating) return false;
    if (type === "ask") {
      state.rotation.alternating = data.alternating || state.rotation.alternating;
      altRenderArmed(data.alternating);
      altStep(`waiting for the re-key of ${data.app}: reset it in the dashboard`, "running");
      $("key").focus();
      return true;
    }
    if (type === "step") {
      const text = ALT_STEP[`${data.step} ${data.status}`] || `${data.step}: ${data.status}`;
      const good = data.status === "ok" || data.status === "done";
      altStep(text + (data.fingerprint ? ` (${data.fingerprint})` : ""), good ? "ok" : "failed");
      if (data.step === "promote" || data.step === "rekey") show("alt-rollback-btn", false);
      return true;
    }
    if (type === "notice") { $("alt-notice").textContent = data.line; return true; }
    if (type === "rejected") { $("key-status").textContent = `Refused: ${data.message}`; return true; }
    if (type === "closed" && !state.finished) {  // expiry, Cancel, a flow that stopped: the slots say what is left
      backToPlans(`The rotation was closed: ${data.reason}. The slots below say what is left.`);
      return true;
    }
    if (type === "key") {
      show("alt-rollback-btn", false);
      altStep(`key received, fingerprint ${data.fingerprint}: probing`, "running");
      return true;
    }
    return false;
  }

  async function altSubmitKey() {
    const input = $("key");
    if (!input.value.trim()) { $("key-status").textContent = "Paste the new key first."; input.focus(); return; }
    $("rotate-btn").disabled = true;
    $("key-status").textContent = "";
    let r;
    try {
      const body = JSON.stringify({ key: input.value });
      input.value = "";
      r = await sendKey(state.rotation.id, body);
    } finally { $("rotate-btn").disabled = false; }
    const d = r.data || {};
    if (d.report && d.outcome === "finished") { renderReport(d.report); return; }
    if (d.outcome === "rejected" || d.outcome === "refused") {
      $("key-status").textContent = `Refused: ${d.message}`;
      input.focus();
    } else if (r.status >= 400) {
      $("key-status").textContent = `Not taken: ${d.error || d.message || r.status}`;
    }
  }

  async function altRollBack() {
    if (!state.rotation) return;
    $("alt-rollback-btn").disabled = true;
    try {
      const r = await api("POST", `/api/rotations/${encodeURIComponent(state.rotation.id)}/rollback`, {});
      if (!r.ok) { $("key-status").textContent = `Not rolled back: ${r.data.error || r.status}`; return; }
      show("alt-ask", false);
      show("key-form", false);
      altStep("rolling back: every target moves back to the previous key", "running");
    } finally { $("alt-rollback-btn").disabled = false; }
  }

  async function altPlanRollBack() {
    const p = currentPlan();
    if (!p) return;
    $("plan-status").textContent = `Rolling back ${p.name}…`;
    const r = await api("POST", `/api/plans/${encodeURIComponent(p.name)}/rollback`, who());
    if (r.data.report) {
      state.rotation = r.data.rotation; state.finished = false;
      show("plans-section", false); show("armed-section", false); resetProgress(); renderReport(r.data.report);
    } else $("plan-status").textContent = `Not rolled back: ${r.data.error || r.status}`;
  }

  // The flow's part of the report: who is active now, the re-keys and their proofs, the incident's clock.
  function altReport(report, out) {
    const info = report.alternating;
    if (!info) return;
    const a = info.active || {}, s = info.standby || {};
    const h = $("result-h");
    if (report.exit_code === 0) {
      h.textContent = info.rolled_back ? `Rolled back: ${a.app} is active again` : `Done: ${a.app} is active, ${s.app} the standby`;
    }
    out.append(el("p", { id: "alt-result" }, `Active ${a.app} (${a.fingerprint || "empty"}) · standby ${s.app} (${s.fingerprint || "empty"})`));
    if (info.promote) out.append(el("p", {}, `Promote: ${info.promote.state}, window ${ms(info.promote.window_s)}`));
    for (const rk of info.rekeys || []) {
      const proof = rk.previous_revoked === true ? "previous key proven revoked"
        : rk.previous_revoked === false ? "previous key STILL WORKS" : "no previous key";
      out.append(el("p", {}, `Re-key of ${rk.app}: ${rk.outcome} (${rk.fingerprint || "—"}), ${proof}`));
    }
    const inc = info.incident;
    if (inc && inc.leaked_in_use_s !== null && inc.leaked_in_use_s !== undefined) {
      out.append(el("p", {}, `Incident: the leaked key stayed in use ${ms(inc.leaked_in_use_s)} after the start; ` +
        (inc.revoked_at ? `proven revoked ${inc.revoked_after_s.toFixed(1)} s after it` : "NOT proven revoked")));
    }
    show("alt-armed", false);
  }

  function altReset() {
    show("alt-armed", false);
    show("alt-ask", false);
    show("alt-rollback-btn", false);
    show("instruction-box", true);
  }

  function altWire() {
    $("alt-rotate-btn").addEventListener("click", guard(() => altArm("rotate")));
    $("alt-incident-btn").addEventListener("click", guard(() => altArm("incident")));
    $("alt-rekey-btn").addEventListener("click", guard(() => altArm("rekey")));
    $("alt-revoke-now-btn").addEventListener("click", guard(() => altArm("incident", "revoke-now")));
    $("alt-standby-first-btn").addEventListener("click", guard(() => altArm("incident", "standby-first")));
    $("alt-rollback-btn").addEventListener("click", guard(altRollBack));
    $("alt-plan-rollback-btn").addEventListener("click", guard(altPlanRollBack));
  }

  // -- history ---------------------------------------------------------------
  async function loadHistory() {
    let r;
    try { r = await api("GET", "/api/history?limit=10"); } catch (e) { return; }
    if (!r.ok) return;
    $("history").tBodies[0].replaceChildren(...(r.data.rotations || []).map((h) => el("tr", {},
      el("td", {}, when(h.created_at)), el("td", {}, h.plan), el("td", {}, h.kind), el("td", {}, statusCell(h.state)),
      el("td", {}, h.window_s !== null && h.window_s !== undefined ? ms(h.window_s) : ""),
      el("td", {}, h.new_fp || h.old_fp || ""), el("td", {}, h.operator))));
  }

  // -- wiring ----------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", guard(signIn));
    $("plan-form").addEventListener("submit", guard(arm));
    $("plan").addEventListener("change", () => {
      renderPlanInfo();
      if (!state.rotation) { show("armed-section", false); $("plan-status").textContent = ""; }
    });
    $("check-btn").addEventListener("click", guard(() => syncPlan(true)));
    $("sync-btn").addEventListener("click", guard(() => syncPlan(false)));
    $("key-form").addEventListener("submit", guard(submitKey));
    $("clipboard-btn").addEventListener("click", guard(keyFromClipboard));
    $("cancel-btn").addEventListener("click", guard(cancelArmed));
    $("reattach-btn").addEventListener("click", guard(() => { const p = currentPlan(); return p && p.active && attach(p.active.id); }));
    $("close-active-btn").addEventListener("click", guard(closeActive));
    $("resume-btn").addEventListener("click", guard(resumeLeft));
    $("accept-unprobed").addEventListener("change", unprobedLabel);
    $("again-btn").addEventListener("click", () => { resetProgress(); backToPlans(""); });
    $("signout").addEventListener("click", () => signOut("Signed out."));
    altWire();
    if (sessionStorage.getItem(TOKEN)) {
      loadPlans().then(signedIn).catch(() => signOut(""));
    }
  });
})();
