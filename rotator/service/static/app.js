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
  const state = { plans: [], rotation: null, follow: null, finished: false, who: null, buttons: null };
  const TITLE = document.title;

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

  const GROUPED = (digits) => ({ minimumFractionDigits: digits, maximumFractionDigits: digits });
  function ms(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 10 ? `${(seconds * 1000).toLocaleString("en-US", GROUPED(1))} ms`
      : `${seconds.toLocaleString("en-US", GROUPED(2))} s`;
  }

  // Every time on the page is in the browser's zone, said with its abbreviation ("07:16:09 UTC").
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function zoneName(d) {
    try {
      const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d)
        .find((x) => x.type === "timeZoneName");
      if (part) return part.value;
    } catch (e) { /* fall through */ }
    const off = -d.getTimezoneOffset();
    return `UTC${off >= 0 ? "+" : "-"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  }

  function clock(ts, withMs) {
    const d = new Date(ts * 1000);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return `${t}${withMs ? `.${pad(d.getMilliseconds(), 3)}` : ""} ${zoneName(d)}`;
  }

  function when(ts) {
    if (!ts) return "—";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ts)}`;
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
                 unconfirmed: "?", conflict: "✗", drift: "✗", pending: "·", done: "✓", rekey_left: "!" };
  function statusCell(status) {
    const good = status === "ok" || status === "unchanged" || status === "done";
    const cls = good ? "st-ok" : (status === "running" || status === "pending") ? "st-running"
      : (status === "warning" || status === "rekey_left") ? "st-warning" : "st-failed";
    return el("span", { class: `status ${cls}`, "data-status": status }, `${MARK[status] || "·"} ${status}`);
  }

  // A run's state in the history: a skipped sync (the plan was locked) is grey, not a failure;
  // an alternating run whose promote is done and re-key left (`rekey_left`) is a warning.
  function runCell(status) {
    if (status !== "skipped") return statusCell(status);
    return el("span", { class: "status st-skipped", "data-status": status }, `${MARK.skipped} skipped`);
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
    stopResetCounter();
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
    $("zone-note").textContent = `Times are in this browser's zone (${zoneName(new Date())}).`;
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
    // `from`: where the age comes from, worded as `rotator status` says it (rotator/key_age.py)
    add("Key age", age.status === "unknown" ? "unknown: nothing records it (rotator adopt PLAN --set-at DATE records it)"
      : `${ago(age.age_seconds)}${age.max_age_days ? ` (max ${age.max_age_days} days)` : ""}` +
        (age.from ? `, from ${age.from}` : ""),
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
    if (p.proxy) { add("API proxy", ""); dl.lastChild.id = "proxy-info"; renderProxy(p.proxy); }
    renderActive(p);
    altPlanInfo(p).catch(() => {});  // alternating plans: the slots and the flows
  }

  // The plan's API proxy that this service runs: where it listens, its key's fingerprint, what it holds.
  function renderProxy(x) {
    const dd = $("proxy-info");
    if (!dd) return;
    const said = { dead: "dead: holding requests for the new key", suspect: "checking it after a 401" }[x.state] || x.state;
    dd.textContent = `listening on ${x.listen} · key ${x.fingerprint || "none yet"} (${said}) · ` +
      `held now ${x.held_now} · replayed ${x.replays} (${x.replays_refused} refused again) · 503s ${x.unavailable}`;
    dd.className = x.held_now || x.state === "dead" ? "warn" : "";
  }

  async function refreshProxy() {  // every 2 s while a plan with a proxy is shown: held requests change fast
    const p = currentPlan();
    if (!p || !p.proxy || document.hidden) return;
    const r = await api("GET", `/api/plans/${encodeURIComponent(p.name)}`);
    if (r.ok && r.data.proxy && currentPlan() === p) { p.proxy = r.data.proxy; renderProxy(p.proxy); }
  }
  setInterval(() => { refreshProxy().catch(() => {}); }, 2000);

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
      ? `This armed rotation closes itself at ${clock(rot.expires_at)} if no key comes.`
      : "";
    setButtons(rot.buttons);
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

  // The paste button and Cancel say what they do now, in the service's words (`rotator.service.buttons`).
  function setButtons(b) {
    state.buttons = b || null;
    $("cancel-btn").textContent = b ? b.cancel : "Cancel";
    $("cancel-effect").textContent = b ? b.cancel_effect : "";
    unprobedLabel();
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
    $("rotate-btn").textContent = on ? "Write it WITHOUT a probe" : (state.buttons ? state.buttons.paste : "Rotate");
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
    document.title = TITLE;
  }

  // The banner at the top of the page once the old key is seen refused: what happened, in the
  // service's words, and a counter that runs here from the reset's wall time (also in the tab's
  // title). Screen readers hear the banner once (role=alert), not each tick.
  function startResetCounter(data) {
    const reset = data.reset;
    stopResetCounter();
    const cap = (t) => (t ? t[0].toUpperCase() + t.slice(1) : "");
    $("reset-lead").textContent = `${cap(data.message || "the old key stopped working")}.`;
    $("reset-detail").textContent = `Reset seen at ${clock(reset.at, true)}` +
      (data.detail ? `: ${data.detail}.` : ".");
    const tick = () => {
      const ago = Math.max(0, Date.now() / 1000 - reset.at).toFixed(1);
      $("reset-ago").textContent = `${ago} s ago`;
      document.title = `OUTAGE ${ago} s · ${TITLE}`;
    };
    tick();
    show("reset-status", true);
    state.resetTimer = setInterval(tick, 100);
    if (data.buttons) setButtons(data.buttons);
    keepKeyInView();
  }

  // The banner pushes the page down: the key field, its buttons and a refusal stay in view below it.
  function keepKeyInView() {
    if (!$("key-form").hidden && !$("armed-section").hidden) $("key-form").scrollIntoView({ block: "nearest" });
  }

  // The outage as the report gives it: a figure, or only a lower bound when the reset was not seen
  // before the key came. Read from `outage_bound` ({at_least, at_most, reason}) when the report has
  // one, from `outage_is_lower_bound` when it says so, else from the reset itself: placed at the key's
  // arrival (`inferred`), or refused at the watch's first look (`after` null: before the watch began).
  function outageOf(report) {
    const reset = report.reset || {};
    const b = report.outage_bound || null;
    const window = report.window_seconds;
    let lower = typeof report.outage_is_lower_bound === "boolean" ? report.outage_is_lower_bound
      : Boolean(report.reset && (reset.inferred === true || reset.after === null));
    let seconds = report.outage_seconds;
    if (seconds === null || seconds === undefined) {
      if (!b || b.at_least === null || b.at_least === undefined) return null;
      seconds = b.at_least;
      lower = true;
    }
    let atMost = b ? b.at_most : null;
    if ((atMost === null || atMost === undefined) && reset.uncertainty !== null && reset.uncertainty !== undefined) {
      atMost = seconds + reset.uncertainty;
    }
    return { seconds, lower, atMost: atMost === undefined ? null : atMost, window };
  }

  function outageLines(report) {
    const o = outageOf(report);
    if (!o) {
      // Only where a key came in this run and a reset could have been seen (not a resume, not a promote).
      if (report.alternating || report.key_received_at === null || report.key_received_at === undefined) return [];
      return [el("p", { class: "outage-lead unmeasured", id: "outage-lead" }, "Outage (what consumers saw): ",
        el("strong", { id: "outage" }, "not measured"), ": rotator saw no reset of the old key, so it cannot say")];
    }
    const reset = report.reset || {};
    const most = o.lower && o.atMost !== null ? ` (at most ${ms(o.atMost)})` : "";
    const lines = [el("p", { class: "outage-lead", id: "outage-lead" }, "Outage (what consumers saw): ",
      el("strong", { id: "outage" }, `${o.lower ? "≥ " : ""}${ms(o.seconds)}`), most)];
    const arrived = report.key_received_at ? clock(report.key_received_at, true) : null;
    if (o.lower) {
      const after = reset.after ? ` after the old key's last good check at ${clock(reset.after, true)}` : "";
      lines.push(el("p", { class: "warn", id: "outage-bound" }, "At least: the reset was not seen before the key " +
        `arrived. It came${after} and by the key's arrival${arrived ? ` at ${arrived}` : ""}, so the consumers ` +
        "failed for longer than rotator can measure."));
      const share = report.operator_seconds ? `your share ${ms(report.operator_seconds)} + ` : "";
      lines.push(el("p", { class: "outage-sum" },
        `= ${share}window ${ms(o.window)} (key received → last target done) + the time from the reset to the key`));
    } else {
      const from = reset.at ? `reset seen ${clock(reset.at, true)}` : "reset";
      const to = arrived ? `key received ${arrived}` : "key received";
      lines.push(el("p", { class: "outage-sum" },
        `= your share ${ms(report.operator_seconds)} (${from} → ${to}) + window ${ms(o.window)} ` +
        "(key received → last target done)"));
      if (reset.uncertainty !== null && reset.uncertainty !== undefined) {
        lines.push(el("p", { class: "hint" }, `The reset happened at most ${ms(reset.uncertainty)} before it was seen` +
          (o.atMost !== null ? `, so the outage was at most ${ms(o.atMost)}.` : ".")));
      }
    }
    return lines;
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
    // What the consumers saw leads (the outage), then what rotator can shorten (the window).
    out.replaceChildren(...[
      el("h3", { id: "result-h", tabindex: "-1", class: good ? "st-ok" : "st-failed" },
        good ? "Done: every target holds the new key" : `Not finished: ${report.state}`),
      ...outageLines(report),
      el("p", { class: good ? "window" : "window not-done", title: "key received → last target done" },
        good ? "Window (key received → last target done): " : "Window so far (key received → last target tried; not every target holds the key): ",
        el("strong", { id: "window" }, ms(report.window_seconds))),
      // The plain "every target holds the new key; window …" is the headline and the window again: said once.
      good && /^every target holds the new key; window [\d.]+s$/.test(report.message || "") ? null
        : el("p", { id: "result-message" }, report.message),
      el("p", {}, `Fingerprint ${report.old_fingerprint || "—"} → ${report.new_fingerprint || "—"} · rotation ${report.id}`),
    ].filter(Boolean));
    if (report.old_key_check) {
      // outcome "accepted" means the check passed: the API refused the old key.
      out.append(el("p", {}, `Old key check: ${report.old_key_check.detail}`));
    }
    for (const w of report.warnings || []) out.append(el("p", { class: "warn" }, `Warning: ${w}`));
    stopResetCounter();
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
      // The banner stays: the outage lasts until the report (a refused paste does not end it).
    } else if (type === "reset") startResetCounter(data);
    else if (type === "refused") {
      $("key-status").textContent = `Refused: ${noFlags(data.message)}`;
      keepKeyInView();
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
      const works = s.state === "works" ? "yes, on every URL"
        : s.state === "refused" ? `NO: ${s.problem || "refused"}`
        : s.state === "could not check" ? `could not check: ${s.problem || "no answer"}` : "not probed";
      return el("tr", { "data-slot": who }, el("th", { scope: "row" }, who),
        el("td", { class: "alt-app" }, s.app + (s.app_recorded === false ? " (first use: the plan lists it first)" : "")),
        el("td", {}, s.fingerprint || "(empty)"),
        el("td", { title: s.age_from ? `from ${s.age_from}` : "" }, altAge(s.age_s)),
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
    $("alt-instruction").replaceChildren(...(ask.steps || [ask.instruction]).map((t) => el("li", {}, t)));
    if (ask.refused) $("key-status").textContent = `Refused: ${ask.refused}`;
    show("alt-rollback-btn", Boolean(info && info.can_roll_back));
    setButtons(info && info.buttons);
    const expires = ask.expires_at || (state.rotation && state.rotation.expires_at);
    $("expires").textContent = expires ? `This rotation closes itself at ${clock(expires)} if no key comes.` : "";
  }

  function altStep(line, status) {
    $("alt-steps").append(el("li", {}, statusCell(status), " ", line));
  }

  // Returns true when the event is an alternating flow's (handled here).
  function altHandleEvent(type, data) {
    if (!state.rotation || !state.rotation.alternating) return false;
    if (type === "ask") {
      state.rotation.alternating = data.alternating || state.rotation.alternating;
      if (data.expires_at) state.rotation.expires_at = data.expires_at;  // the expiry counts from the ask
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
    $("history").tBodies[0].replaceChildren(...foldSyncs(r.data.rotations || []).map((h) => h.folded
      ? el("tr", { class: "folded" }, el("td", {}, when(h.last.created_at)), el("td", {}, h.last.plan), el("td", {}, "sync"),
        el("td", { colspan: "4" }, `${h.folded} syncs, no drift since ${when(h.first.created_at)}`))
      : el("tr", {},
        el("td", {}, when(h.created_at)), el("td", {}, h.plan), el("td", {}, h.kind), el("td", {}, runCell(h.state)),
        el("td", {}, h.window_s !== null && h.window_s !== undefined ? ms(h.window_s) : ""),
        el("td", {}, (h.repaired && h.repaired.length)
          ? `drift repaired: ${h.repaired.map((d) => `${d.backend} (${d.before || "absent"} → ${d.after || "?"})`).join(", ")}`
          : (h.new_fp || h.old_fp || "")),
        el("td", {}, h.operator))));
  }

  // Consecutive syncs of one plan that found nothing to repair: one line, not one row per tick.
  function foldSyncs(rows) {
    const out = [];
    let run = [];
    const noop = (h) => h.kind === "sync" && h.state === "done" && !(h.repaired && h.repaired.length);
    const flush = () => {
      if (run.length >= 2) out.push({ folded: run.length, last: run[0], first: run[run.length - 1] });
      else out.push(...run);
      run = [];
    };
    for (const h of rows) {
      if (noop(h) && (!run.length || run[0].plan === h.plan)) { run.push(h); continue; }
      flush();
      if (noop(h)) run.push(h); else out.push(h);
    }
    flush();
    return out;
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
