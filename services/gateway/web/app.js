/* TherapyBridge web page: plain, build-free JavaScript.
 * Privacy: never write transcript text, notes or names to the console. All user data is
 * inserted with textContent (never innerHTML).
 * Routes (URL hash): #/ every session, #/patients/<id> one patient's sessions,
 * #/sessions/<id> one session. Signed out, only the sign-in form is rendered. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = window.sessionStorage;
  const STAGE_LABELS = { upload: "Upload", preprocessing: "Preprocessing", transcription: "Transcription",
    diarization: "Speakers", join: "Merge", merge: "Merge", notes: "Notes" };
  const STAGE_ORDER = ["upload", "preprocessing", "transcription", "diarization", "join", "merge", "notes"];
  const EXPORT_LABELS = { txt: "Transcript (.txt)", json: "Transcript (.json)", srt: "Subtitles (.srt)",
    vtt: "Subtitles (.vtt)", rttm: "Diarization (.rttm)", "notes.json": "Notes (.json)", soap: "SOAP note (.md)",
    dap: "DAP note (.md)", docx: "Word document (.docx)" };
  const TERMINAL = ["processed", "failed", "cancelled"];
  const ROLES = [["", "Not set"], ["THERAPIST", "Therapist"], ["CLIENT", "Client"], ["OTHER", "Other"]];
  const SEVERITY = { high: 3, moderate: 2, low: 1 };
  const ACTIVE_WINDOW_MS = 10 * 60 * 1000;  // refresh silently only while someone used the page lately

  const state = { token: STORE.getItem("tb.token"), refresh: STORE.getItem("tb.refresh"),
    expiresAt: Number(STORE.getItem("tb.expires") || 0), patients: [], current: null, detail: null, source: null,
    segments: [], currentSeg: -1, selected: -1, patientFilter: null, cursor: null, lastActive: Date.now(),
    refreshTimer: null, pollTimer: null, signedIn: false };

  // ---- helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }
  function clock(t) {
    t = Math.max(0, Math.floor(t || 0));
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function duration(t) {
    t = Math.round(t || 0);
    if (t < 60) return `${t} s`;
    const h = Math.floor(t / 3600), m = Math.round((t % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min`;
  }
  function day(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }
  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
    return `about ${Math.round(seconds / 60)} min left`;
  }
  function todayIso() {
    const d = new Date();
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  }
  // While signed out only the sign-in's own messages show (not "could not load …" from a
  // request that found out the sign-in had ended).
  function flash(message, force) {
    if (message && !state.signedIn && !force) return;
    const f = $("flash");
    f.textContent = message || "";
    f.hidden = !message;
  }
  const jsonBody = (body, method) => ({ method: method || "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });

  // ---- the API, authenticated ------------------------------------------------------------
  // Each refresh token works once (a replay signs everyone out): concurrent 401s share one refresh.
  let refreshing = null;
  function refreshToken() {
    if (!refreshing) refreshing = doRefresh().finally(() => { refreshing = null; });
    return refreshing;
  }
  async function doRefresh() {
    if (!state.refresh) return false;
    let r;
    try {
      r = await fetch("/api/auth/refresh", jsonBody({ refresh_token: state.refresh }));
    } catch (_) { return false; }
    if (!r.ok) return false;
    saveTokens(await r.json());
    return true;
  }

  // The page's authenticated fetch: returns the Response (what the review module gets).
  async function apiFetch(path, options = {}, retried = false) {
    const headers = Object.assign({}, options.headers || {}, { Authorization: `Bearer ${state.token}` });
    const sent = state.token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401 && !retried) {
      // another request may have refreshed meanwhile: retry with its token before refreshing again
      if (state.token && state.token !== sent) return apiFetch(path, options, true);
      if (await refreshToken()) return apiFetch(path, options, true);
    }
    if (response.status === 401 && state.signedIn) signOut("Your session expired. Please sign in again.");
    return response;
  }

  async function api(path, options = {}) {
    const response = await apiFetch(path, options);
    if (response.status === 401) throw new Error("not signed in");
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        if (typeof body.detail === "string") detail = body.detail;
        else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
      } catch (_) { /* not JSON */ }
      const err = new Error(detail);
      err.status = response.status;
      throw err;
    }
    return response.status === 204 ? null : response.json();
  }

  // URLs the browser opens itself (audio element, download links, EventSource) cannot carry
  // the Authorization header: they get a short-lived signed link for one session and one
  // purpose (never the access token, which would end up in history and server logs).
  async function linkedUrl(id, purpose, path) {
    const link = await api(`/api/sessions/${id}/links`, jsonBody({ purpose }));
    return { url: `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(link.token)}`,
      expiresAt: Date.now() + 1000 * link.expires_in };
  }

  // ---- auth ----------------------------------------------------------------------------
  function saveTokens(body) {
    state.token = body.access_token;
    state.refresh = body.refresh_token || state.refresh;
    state.expiresAt = Date.now() + 1000 * (body.expires_in || 900);
    STORE.setItem("tb.token", state.token);
    STORE.setItem("tb.expires", String(state.expiresAt));
    if (state.refresh) STORE.setItem("tb.refresh", state.refresh);
    scheduleRefresh();
  }

  // Silent refresh: a minute before the access token ends (or at 80 % of a short one),
  // while the page was used in the last ten minutes; otherwise the next request refreshes.
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    if (!state.refresh || !state.expiresAt) return;
    const left = state.expiresAt - Date.now();
    const wait = Math.max(1000, Math.min(left - 60000, left * 0.8));
    state.refreshTimer = setTimeout(async () => {
      if (!state.signedIn) return;
      if (Date.now() - state.lastActive > ACTIVE_WINDOW_MS) return;
      if (!(await refreshToken()) && state.signedIn) signOut("Your session expired. Please sign in again.");
    }, wait);
  }

  function setSignedIn(on) {
    state.signedIn = on;
    const app = $("app-view");
    app.hidden = !on;
    app.inert = !on;
    if (on) app.removeAttribute("inert"); else app.setAttribute("inert", "");
    $("whoami").hidden = !on;
    $("login-view").hidden = on;
  }

  function signOut(message) {
    closeSession();
    clearTimeout(state.refreshTimer);
    state.token = state.refresh = null;
    state.expiresAt = 0;
    for (const key of ["tb.token", "tb.refresh", "tb.expires"]) STORE.removeItem(key);
    setSignedIn(false);
    $("whoami-name").textContent = "";
    $("patient-list").replaceChildren();
    $("session-list").replaceChildren();
    flash(message || "", true);
    if (message) $("login-email").focus();
  }

  // Sign out on the server too: this sign-in's tokens (and links) stop working at once.
  async function signOutEverywhere() {
    const token = state.token;
    signOut("");
    if (token) {
      try { await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }); }
      catch (_) { /* offline: the tokens expire by themselves */ }
    }
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const err = $("login-error");
    err.hidden = true;
    const form = new URLSearchParams({ username: $("login-email").value, password: $("login-password").value });
    let r;
    try { r = await fetch("/api/auth/token", { method: "POST", body: form }); }
    catch (_) { err.textContent = "The server cannot be reached."; err.hidden = false; return; }
    if (!r.ok) {
      let detail = "Sign-in failed";
      try { detail = (await r.json()).detail || detail; } catch (_) { /* ignore */ }
      err.textContent = detail;
      err.hidden = false;
      return;
    }
    saveTokens(await r.json());
    $("login-password").value = "";
    await enterApp();
  }

  async function enterApp() {
    let me;
    try { me = await api("/api/auth/me"); } catch (_) { signOut(state.token ? "Your session expired. Please sign in again." : ""); return; }
    $("whoami-name").textContent = me.display_name || me.email;
    flash("");
    setSignedIn(true);
    scheduleRefresh();
    await loadPatients().catch((e) => flash(`Could not load patients: ${e.message}`));
    await route();
  }

  // ---- routing -------------------------------------------------------------------------
  function parseHash() {
    const m = /^#\/(sessions|patients)\/([0-9a-fA-F-]{36})$/.exec(window.location.hash || "");
    return m ? { view: m[1], id: m[2] } : { view: "home", id: null };
  }

  async function route() {
    if (!state.signedIn) return;
    const r = parseHash();
    if (r.view === "sessions") {
      $("home-view").hidden = true;
      $("session-view").hidden = false;
      if (state.current !== r.id) await openSession(r.id);
      return;
    }
    closeSession();
    $("session-view").hidden = true;
    $("home-view").hidden = false;
    state.patientFilter = r.view === "patients" ? r.id : null;
    renderPatients();
    await loadSessions().catch((e) => flash(`Could not load sessions: ${e.message}`));
  }

  // ---- patients ------------------------------------------------------------------------
  async function loadPatients() {
    state.patients = await api("/api/patients");
    renderPatients();
    const select = $("upload-patient");
    const keep = select.value;
    select.replaceChildren(el("option", { value: "", text: "(none)" }),
      ...state.patients.map((p) => el("option", { value: p.id, text: p.display_name })));
    select.value = state.patients.some((p) => p.id === keep) ? keep : "";
  }

  function renderPatients() {
    const needle = $("patient-search").value.trim().toLowerCase();
    const shown = state.patients.filter((p) => !needle || p.display_name.toLowerCase().includes(needle) ||
      (p.external_ref || "").toLowerCase().includes(needle));
    const list = $("patient-list");
    list.replaceChildren(el("li", {}, el("a", { href: "#/", "data-testid": "patient-all",
      "aria-current": state.patientFilter ? null : "page", text: "All sessions" })),
    ...shown.map((p) => el("li", { "data-testid": "patient-item", "data-patient-id": p.id },
      el("a", { href: `#/patients/${p.id}`, "aria-current": state.patientFilter === p.id ? "page" : null,
        text: p.display_name }))));
    if (!state.patients.length) list.append(el("li", { class: "muted", text: "No patients yet" }));
    else if (!shown.length) list.append(el("li", { class: "muted", text: "No patient matches" }));
    const current = state.patients.find((p) => p.id === state.patientFilter);
    $("sessions-title").textContent = current ? `Sessions of ${current.display_name}` : "All sessions";
    $("patient-actions").hidden = !current;
    $("patient-edit-form").hidden = true;
    if (current) $("upload-patient").value = current.id;
  }

  async function onCreatePatient(ev) {
    ev.preventDefault();
    const name = $("patient-name").value.trim();
    if (!name) return;
    try {
      const p = await api("/api/patients", jsonBody({ display_name: name }));
      $("patient-name").value = "";
      await loadPatients();
      $("upload-patient").value = p.id;
      window.location.hash = `#/patients/${p.id}`;
    } catch (e) { flash(`Could not add the patient: ${e.message}`); }
  }

  function startRename() {
    const p = state.patients.find((x) => x.id === state.patientFilter);
    if (!p) return;
    $("patient-edit-name").value = p.display_name;
    $("patient-edit-form").hidden = false;
    $("patient-edit-name").focus();
  }

  async function onRename(ev) {
    ev.preventDefault();
    const name = $("patient-edit-name").value.trim();
    if (!name || !state.patientFilter) return;
    try {
      await api(`/api/patients/${state.patientFilter}`, jsonBody({ display_name: name }, "PATCH"));
      await loadPatients();
      await loadSessions();
      $("patient-rename").focus();
    } catch (e) { flash(`Could not rename the patient: ${e.message}`); }
  }

  async function onDeletePatient() {
    const p = state.patients.find((x) => x.id === state.patientFilter);
    if (!p || !window.confirm(`Delete ${p.display_name} and every session, recording, transcript and note of theirs?`)) return;
    try {
      await api(`/api/patients/${p.id}`, { method: "DELETE" });
      await loadPatients();
      window.location.hash = "#/";
    } catch (e) { flash(`Could not delete the patient: ${e.message}`); }
  }

  // ---- sessions list -------------------------------------------------------------------
  function patientName(id) {
    const p = state.patients.find((x) => x.id === id);
    return p ? p.display_name : "";
  }

  function statusChip(s) {
    const label = s.stalled ? "stalled" : s.status;
    const text = s.stalled ? `Stalled (${s.progress} %)` : (s.status === "processed" || TERMINAL.includes(s.status)
      ? s.status : `${s.status} ${s.progress} %`);
    return el("span", { class: `status-chip ${label}`, "data-testid": "session-status", "data-status": label, text });
  }

  function riskBadge(severity, count) {
    if (!severity) return el("span", { class: "muted", "data-testid": "risk-badge", "data-severity": "none", text: "—" });
    return el("span", { class: `risk-badge ${severity}`, "data-testid": "risk-badge", "data-severity": severity,
      title: `${count} risk flag(s); highest: ${severity}`, text: `${severity} (${count})` });
  }

  function sessionRow(s) {
    const open = () => { window.location.hash = `#/sessions/${s.id}`; };
    const link = el("a", { href: `#/sessions/${s.id}`, "data-testid": "session-link",
      text: s.audio_filename || "recording" });
    return el("tr", { class: "clickable", "data-testid": "session-item", "data-session-id": s.id,
      onclick: (e) => { if (e.target.tagName !== "A") open(); } },
    el("td", { "data-label": "Date", "data-testid": "session-date", text: day(s.session_date || s.created_at) }),
    el("td", { "data-label": "Patient", text: s.patient_name || patientName(s.patient_id) || "—" }),
    el("td", { "data-label": "Duration", "data-testid": "session-duration", text: duration(s.duration_seconds) }),
    el("td", { "data-label": "Status" }, statusChip(s), s.quality_warning_count
      ? el("span", { class: "muted quality-count", "data-testid": "quality-count",
        text: ` · ${s.quality_warning_count} to review` }) : null),
    el("td", { "data-label": "Risk" }, riskBadge(s.max_risk_severity, s.risk_flag_count)),
    el("td", { "data-label": "Recording" }, link));
  }

  function listQuery(cursor) {
    const [sort, order] = $("session-sort").value.split(":");
    const params = new URLSearchParams({ limit: "50", sort, order });
    const q = $("session-search").value.trim();
    if (q) params.set("q", q);
    const status = $("session-status").value;
    if (status) params.set("status", status);
    if (state.patientFilter) params.set("patient_id", state.patientFilter);
    if (cursor) params.set("cursor", cursor);
    return `/api/sessions?${params}`;
  }

  let listSeq = 0;
  async function loadSessions(more) {
    const seq = ++listSeq;
    const data = await api(listQuery(more ? state.cursor : null));
    if (seq !== listSeq) return;  // a newer search answered first
    const list = $("session-list");
    const rows = data.items.map(sessionRow);
    if (more) list.append(...rows); else list.replaceChildren(...rows);
    state.cursor = data.next_cursor;
    $("sessions-more").hidden = !data.next_cursor;
    const n = list.querySelectorAll("tr[data-session-id]").length;
    $("sessions-count").textContent = n ? `${n}${data.next_cursor ? "+" : ""} session${n === 1 ? "" : "s"}` : "No sessions";
  }

  function debounce(fn, ms) {
    let t = null;
    return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  }

  // ---- upload --------------------------------------------------------------------------
  async function uploadFile(file) {
    if (!file) return;
    const status = $("upload-status");
    status.textContent = `Uploading ${file.name}…`;
    const form = new FormData();
    form.append("file", file, file.name);
    const patient = $("upload-patient").value;
    if (patient) form.append("patient_id", patient);
    const speakers = $("upload-speakers").value;
    if (speakers) form.append("num_speakers", speakers);
    const date = $("upload-date").value || todayIso();
    form.append("session_date", `${date}T12:00:00`);
    try {
      const res = await api("/api/sessions/upload", { method: "POST", body: form });
      status.textContent = "Uploaded; processing started.";
      $("upload-file").value = "";
      window.location.hash = `#/sessions/${res.id}`;
    } catch (e) {
      status.textContent = `Upload rejected: ${e.message}`;
    }
  }

  function setupDropzone() {
    const zone = $("dropzone");
    ["dragenter", "dragover"].forEach((n) => zone.addEventListener(n, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((n) => zone.addEventListener(n, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
    zone.addEventListener("drop", (e) => uploadFile(e.dataTransfer.files[0]));
    $("upload-file").addEventListener("change", (e) => uploadFile(e.target.files[0]));
  }

  // ---- one session ---------------------------------------------------------------------
  function closeStream() {
    if (state.source) { state.source.close(); state.source = null; }
  }

  function closeSession() {
    closeStream();
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    const player = $("player");
    if (player.getAttribute("src")) { player.pause(); player.removeAttribute("src"); player.load(); }
    state.current = null;
    state.detail = null;
  }

  function mountReview(id) {
    const old = $("notes-review");
    const fresh = el("section", { id: "notes-review", "data-testid": "notes-review", "aria-label": "Notes review" });
    old.replaceWith(fresh);
    try {
      if (window.TBReview && window.TBReview.mount) window.TBReview.mount(fresh, id, apiFetch);
    } catch (_) { /* the review module reports its own errors */ }
  }

  async function openSession(id) {
    closeSession();
    state.current = id;
    state.segments = [];
    state.currentSeg = state.selected = -1;
    $("session-view").setAttribute("data-session-id", id);
    $("session-title").textContent = "Session";
    $("session-meta").textContent = "";
    $("transcript").replaceChildren();
    $("speakers").replaceChildren();
    $("speaker-rows").replaceChildren();
    $("exports").replaceChildren();
    $("regenerate-status").textContent = "";
    $("notes").replaceChildren(el("p", { class: "muted", text: "Notes appear when processing finishes." }));
    $("notes-engine").textContent = "";
    $("notes-error").hidden = true;
    mountReview(id);
    setPlayerSource(id).catch(() => {});
    let detail;
    try { detail = await api(`/api/sessions/${id}`); } catch (e) { flash(`Could not open the session: ${e.message}`); return; }
    if (state.current !== id) return;
    renderDetail(detail);
    $("session-title").focus({ preventScroll: true });
    if (!TERMINAL.includes(detail.status)) followStatus(id);
  }

  async function setPlayerSource(id) {
    const { url } = await linkedUrl(id, "audio", `/api/sessions/${id}/audio`);
    if (state.current === id) $("player").src = url;
  }

  async function renderExports(id, formats) {
    const box = $("exports");
    if (!formats.length) {
      box.replaceChildren(el("p", { class: "muted", "data-testid": "no-exports", text: "Exports appear when the transcript is ready." }));
      return;
    }
    let link = await linkedUrl(id, "export", `/api/sessions/${id}/export/FMT`);
    if (state.current !== id) return;
    const hrefOf = (fmt) => link.url.replace("/export/FMT?", `/export/${encodeURIComponent(fmt)}?`);
    const onClick = async (ev) => {
      if (Date.now() < link.expiresAt - 15000) return;  // still valid: the browser follows the href
      ev.preventDefault();  // expired while the page was open: mint a new link, then download
      const anchor = ev.currentTarget;
      link = await linkedUrl(id, "export", `/api/sessions/${id}/export/FMT`);
      for (const a of box.querySelectorAll("a")) a.href = hrefOf(a.getAttribute("data-format"));
      anchor.click();
    };
    box.replaceChildren(...formats.map((fmt) => el("a", {
      href: hrefOf(fmt), download: "", "data-testid": `export-${fmt}`, "data-format": fmt, text: EXPORT_LABELS[fmt] || fmt,
      onclick: onClick })));
  }

  function renderStages(msg) {
    const rank = (n) => (STAGE_ORDER.indexOf(n) < 0 ? 99 : STAGE_ORDER.indexOf(n));
    const entries = Object.entries(msg.stages || {}).sort((a, b) => rank(a[0]) - rank(b[0]));
    $("stage-bars").replaceChildren(...entries.map(([name, st]) => {
      const sp = Math.round(100 * (st.state === "done" || st.state === "skipped" ? 1 : st.fraction || 0));
      const label = STAGE_LABELS[name] || name;
      const barNode = el("div", { class: `bar ${st.state === "done" ? "done" : ""} ${st.state === "failed" ? "failed" : ""}`,
        role: "progressbar", "aria-label": `${label} progress`, "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": String(sp) }, el("div", { class: "fill" }));
      barNode.firstChild.style.width = `${sp}%`;
      const extra = st.state === "running" && !msg.stalled ? eta(st.eta_s) : st.state;
      return el("div", { class: "bar-row", "data-testid": `stage-${name}`, "data-state": st.state },
        el("span", { class: "bar-label", text: label }), barNode,
        el("span", { class: "bar-text", text: `${sp} %${extra ? " · " + extra : ""}` }));
    }));
  }

  function renderProgress(msg) {
    const pct = Math.max(0, Math.min(100, Math.round(msg.progress || 0)));
    const bar = $("overall-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.classList.toggle("done", msg.status === "processed");
    bar.classList.toggle("failed", msg.status === "failed" || msg.status === "cancelled");
    $("overall-fill").style.width = `${pct}%`;
    $("overall-text").textContent = `${pct} %`;
    bar.setAttribute("data-status", msg.status);
    bar.setAttribute("data-stalled", msg.stalled ? "true" : "false");
    // a stalled session gets no time estimate: it would be a guess about something stuck
    const left = TERMINAL.includes(msg.status) || msg.stalled ? "" : eta(msg.estimated_time_remaining);
    $("status-line").textContent = [msg.status, msg.message, left].filter(Boolean).join(" · ");
    renderStages(msg);
    $("warnings").replaceChildren(...(msg.warnings || []).map((w) => el("li", { "data-testid": "warning", text: w })));
    const stalled = $("stalled");
    stalled.hidden = !msg.stalled;
    stalled.textContent = msg.stalled ? `No progress for ${Math.max(1, Math.round((msg.stalled_for_s || 0) / 60))} min: ` +
      "processing seems stuck. Retry sends the unfinished step again; Cancel stops waiting for it." : "";
    const err = $("session-error");
    const why = msg.status === "cancelled" ? `Cancelled: ${msg.error || msg.cancel_reason || "by the therapist"}`
      : (msg.error ? `Processing failed: ${msg.error}` : "");
    err.textContent = why;
    err.hidden = !why;
    const notesFailed = msg.stages && msg.stages.notes && msg.stages.notes.state === "failed";
    const canRetry = msg.stalled || ["failed", "cancelled"].includes(msg.status) || notesFailed;
    $("session-actions").hidden = !(canRetry || (msg.stalled && !TERMINAL.includes(msg.status)));
    $("retry").hidden = !canRetry;
    $("cancel").hidden = !(msg.stalled && !TERMINAL.includes(msg.status));
  }

  async function followStatus(id) {
    closeStream();
    let url;
    try { ({ url } = await linkedUrl(id, "stream", `/api/sessions/${id}/status/stream`)); } catch (_) { return; }
    if (state.current !== id) return;
    closeStream();
    const source = new EventSource(url);
    state.source = source;
    const onMessage = (ev) => {
      if (state.current !== id) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (state.detail && state.detail.status === "cancelled") return;  // cancelled stays cancelled
      renderProgress(Object.assign({}, msg, { stalled: false }));
    };
    source.addEventListener("progress", onMessage);
    source.addEventListener("complete", async (ev) => {
      onMessage(ev);
      source.close();
      if (state.source === source) state.source = null;
      if (state.current === id) {
        try { renderDetail(await api(`/api/sessions/${id}`)); } catch (_) { /* shown by api() */ }
      }
    });
    source.onerror = () => {
      // EventSource reconnects by itself (with Last-Event-ID); if the stream is gone for good, poll.
      if (source.readyState === EventSource.CLOSED && state.current === id) pollDetail(id, 2000);
    };
    pollDetail(id, 30000);  // the stalled flag is the server's judgement: ask for it now and then
  }

  function pollDetail(id, wait) {
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(async () => {
      if (state.current !== id) return;
      try {
        const d = await api(`/api/sessions/${id}`);
        if (state.current !== id) return;
        if (d.stalled || TERMINAL.includes(d.status) || !state.source) renderDetail(d);
        if (!TERMINAL.includes(d.status)) pollDetail(id, state.source ? 30000 : 3000);
      } catch (_) { /* shown by api() */ }
    }, wait);
  }

  function renderDetail(d) {
    state.detail = d;
    const when = d.session_date || d.created_at;
    $("session-title").textContent = [patientName(d.patient_id), day(when)].filter(Boolean).join(" · ") || d.audio_filename || "Session";
    $("session-title").setAttribute("tabindex", "-1");
    $("session-meta").textContent = [d.audio_filename, d.duration_seconds ? duration(d.duration_seconds) : "",
      d.language ? `language ${d.language}` : "", d.diarized === false ? "speakers not separated" : "",
      d.edited_segments ? `${d.edited_segments} line(s) corrected` : ""].filter(Boolean).join(" · ");
    renderProgress(d);
    renderQuality(d.quality_warnings);
    renderSpeakersEditor(d);
    renderTranscript(d);
    renderNotes(d);
    renderExports(d.id, d.exports || []).catch(() => {});
    $("regenerate").hidden = !(d.transcript_segments && d.transcript_segments.length);
  }

  // ---- retry / cancel ------------------------------------------------------------------
  async function onRetry() {
    const id = state.current;
    if (!id) return;
    try {
      const r = await api(`/api/sessions/${id}:retry`, { method: "POST" });
      flash("");
      $("status-line").textContent = `Retrying ${r.stage}…`;
      $("stalled").hidden = true;
      $("session-actions").hidden = true;
      followStatus(id);
    } catch (e) {
      $("session-error").textContent = `Retry not possible: ${e.message}`;
      $("session-error").hidden = false;
    }
  }

  async function onCancel() {
    const id = state.current;
    if (!id || !window.confirm("Stop processing this session? You can retry it later.")) return;
    try {
      closeStream();
      renderDetail(await api(`/api/sessions/${id}:cancel`, jsonBody({ reason: "Cancelled by the therapist" })));
    } catch (e) { flash(`Could not cancel: ${e.message}`); }
  }

  // ---- quality warnings (another service adds them; tolerated when absent) ---------------
  function renderQuality(warnings) {
    const items = Array.isArray(warnings) ? warnings : [];
    $("quality-card").hidden = !items.length;
    $("quality-list").replaceChildren(...items.map((w) => el("li", { class: "quality-item", "data-testid": "quality-warning",
      "data-kind": w.kind || "", "data-severity": w.severity || "warning" },
    el("span", { class: "sev", text: w.severity || "warning" }), el("span", { text: w.message || w.kind || "" }),
    typeof w.start_s === "number" ? el("button", { type: "button", class: "secondary small", "data-testid": "quality-seek",
      "data-start": String(w.start_s), onclick: () => seek(w.start_s), text: `Play from ${clock(w.start_s)}` }) : null)));
  }

  // ---- speakers: names and roles ---------------------------------------------------------
  function speakerIndex(speakers) {
    const idx = {};
    speakers.forEach((s, i) => { idx[s.label] = i % 6; });
    return idx;
  }
  function roleLabel(role) {
    const known = ROLES.find(([v]) => v === role);
    return known ? known[1] : (role || "");
  }
  function speakerName(label, role, speakers) {
    const s = speakers.find((x) => x.label === label);
    if (s && s.display_name) return s.display_name;
    return roleLabel((s && s.role) || role) || label || "Unknown";
  }

  function renderSpeakersEditor(d) {
    const speakers = d.speakers || [];
    $("speakers-editor").hidden = !speakers.length;
    $("speaker-rows").replaceChildren(...speakers.map((s, i) => {
      const role = s.role || "";
      const select = el("select", { id: `spk-role-${i}`, "data-testid": "speaker-role", "data-label": s.label },
        ...ROLES.map(([v, t]) => el("option", { value: v, text: t })));
      if (role && !ROLES.some(([v]) => v === role)) select.append(el("option", { value: role, text: roleLabel(role) }));
      select.value = role;
      return el("div", { class: "speaker-row", "data-testid": "speaker-row", "data-label": s.label },
        el("span", { class: "muted", text: `${s.label}${s.talk_time_s ? " · " + clock(s.talk_time_s) : ""}` }),
        el("div", {}, el("label", { for: `spk-name-${i}`, text: "Name" }),
          el("input", { id: `spk-name-${i}`, maxlength: "100", value: s.display_name || "", "data-testid": "speaker-name",
            "data-label": s.label })),
        el("div", {}, el("label", { for: `spk-role-${i}`, text: "Role" }), select));
    }));
  }

  async function onSaveSpeakers(ev) {
    ev.preventDefault();
    const id = state.current;
    if (!id) return;
    const names = {}, roles = {};
    for (const input of $("speaker-rows").querySelectorAll("[data-testid=speaker-name]")) {
      names[input.dataset.label] = input.value.trim();
    }
    for (const select of $("speaker-rows").querySelectorAll("[data-testid=speaker-role]")) {
      roles[select.dataset.label] = select.value || null;
    }
    try {
      renderDetail(await api(`/api/sessions/${id}/speakers`, jsonBody({ names, roles }, "PATCH")));
      $("speakers-status").textContent = "Saved. Regenerate the notes to use the new names and roles.";
    } catch (e) { $("speakers-status").textContent = `Not saved: ${e.message}`; }
  }

  // ---- transcript + player -------------------------------------------------------------
  function flaggedStarts(d) {
    const flags = d.risk_flags && d.risk_flags.length ? d.risk_flags : ((d.extracted_notes || {}).risk_flags || []);
    return flags.map((f) => Number(f.start)).filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  }

  function segmentNode(seg, i, speakers, idx, flags) {
    const label = seg.speaker || "";
    const who = label ? speakerName(label, seg.role, speakers) : "—";
    const cls = label in idx ? `spk-${idx[label]}` : "spk-5";
    const flagged = flags.some((t) => t >= seg.start - 0.5 && t < seg.end);
    return el("li", { class: `seg ${cls}${flagged ? " flagged" : ""}`, "data-testid": "transcript-line",
      "data-index": String(i), "data-start": String(seg.start), "data-end": String(seg.end),
      "data-speaker": label, "data-role": seg.role || "", "data-edited": seg.edited ? "true" : null,
      onclick: (e) => { if (!e.target.closest(".editor, .edit-btn")) { select(i); seek(seg.start); } } },
    el("span", { class: "time", text: clock(seg.start) }),
    el("span", { class: "who", "data-testid": "transcript-speaker", text: who }),
    el("span", { class: "text", "data-testid": "transcript-text" }, seg.text,
      seg.edited ? el("span", { class: "edited", title: `Recognised as: ${seg.original_text || ""}`, text: " (corrected)" }) : null),
    el("button", { type: "button", class: "edit-btn", tabindex: "-1", "data-testid": "edit-line",
      "aria-label": `Edit line at ${clock(seg.start)}`, onclick: () => editLine(i), text: "Edit" }));
  }

  function renderTranscript(d) {
    const segments = d.transcript_segments || [];
    const speakers = d.speakers || [];
    const idx = speakerIndex(speakers);
    state.segments = segments;
    state.flags = flaggedStarts(d);
    state.currentSeg = -1;
    $("speakers").replaceChildren(...speakers.map((s) => el("span", {
      class: `chip spk-${idx[s.label]}`, "data-testid": "speaker-chip", "data-label": s.label,
      text: `${speakerName(s.label, s.role, speakers)}${s.display_name || s.role ? " (" + s.label + ")" : ""}` +
        (s.role && s.display_name ? ` · ${roleLabel(s.role)}` : "") })));
    const list = $("transcript");
    if (!segments.length) {
      list.replaceChildren(el("li", { class: "muted", text: TERMINAL.includes(d.status) ? "No transcript." : "The transcript appears when it is ready." }));
      return;
    }
    list.replaceChildren(...segments.map((seg, i) => segmentNode(seg, i, speakers, idx, state.flags)));
    if (state.selected >= segments.length) state.selected = -1;
    if (state.selected >= 0) select(state.selected, false);
    const player = $("player");
    if (player.currentTime) highlight(player.currentTime, false, true);
  }

  function lineNode(i) { return $("transcript").querySelector(`[data-index="${i}"]`); }

  function select(i, announce) {
    const prev = $("transcript").querySelector(".seg.selected");
    if (prev) prev.classList.remove("selected");
    state.selected = i;
    const node = lineNode(i);
    if (!node) return;
    node.classList.add("selected");
    scrollIntoRegion(node);
    if (announce) {
      const seg = state.segments[i];
      $("line-announcer").textContent = `Line ${i + 1} of ${state.segments.length}, ${clock(seg.start)}, ` +
        `${node.querySelector(".who").textContent}: ${seg.text}`;
    }
  }

  // Keep a line visible inside the transcript's own scroll box (not the page).
  function scrollIntoRegion(node) {
    const region = $("transcript-region");
    const top = node.offsetTop - region.offsetTop;
    if (top < region.scrollTop || top + node.offsetHeight > region.scrollTop + region.clientHeight) {
      region.scrollTop = Math.max(0, top - region.clientHeight / 3);
    }
  }

  function seek(t) {
    const player = $("player");
    const go = () => {
      player.currentTime = Number(t) || 0;
      highlight(player.currentTime, true);
      const p = player.play();
      if (p && p.catch) p.catch(() => { /* autoplay may be blocked; the seek still happened */ });
    };
    if (player.readyState >= 1) go();
    else player.addEventListener("loadedmetadata", go, { once: true });
  }

  function segmentAt(t) {
    const segs = state.segments;
    for (let i = 0; i < segs.length; i++) {
      if (t >= segs[i].start && t < segs[i].end) return i;
      if (segs[i].start > t) return -1;
    }
    return -1;
  }

  function highlight(t, scroll, force) {
    const found = segmentAt(t);
    if (found === state.currentSeg && !force) return;
    const list = $("transcript");
    const prev = list.querySelector(".seg.current");
    if (prev) { prev.classList.remove("current"); prev.removeAttribute("aria-current"); }
    state.currentSeg = found;
    if (found < 0) return;
    const node = lineNode(found);
    if (!node) return;
    node.classList.add("current");
    node.setAttribute("aria-current", "true");
    if (scroll) scrollIntoRegion(node);
  }

  function togglePlay() {
    const player = $("player");
    if (player.paused) { const p = player.play(); if (p && p.catch) p.catch(() => {}); } else player.pause();
  }

  function stepLine(delta) {
    if (!state.segments.length) return;
    const from = state.selected >= 0 ? state.selected : (state.currentSeg >= 0 ? state.currentSeg : -1);
    const i = Math.max(0, Math.min(state.segments.length - 1, from + delta));
    select(i, true);
    seek(state.segments[i].start);
  }

  function nextFlag() {
    const flags = state.flags || [];
    if (!flags.length) { $("line-announcer").textContent = "No risk flags in this session."; return; }
    const now = $("player").currentTime || 0;
    const t = flags.find((x) => x > now + 0.5);
    const target = t === undefined ? flags[0] : t;
    const i = segmentAt(target);
    const line = i >= 0 ? i : state.segments.findIndex((s) => s.end > target);
    if (line >= 0) select(line, true);
    seek(target);
  }

  function onTranscriptKey(e) {
    if (e.target.closest("textarea, input, select, .editor")) return;
    const player = $("player");
    const keys = {
      " ": () => togglePlay(), k: () => togglePlay(),
      ArrowLeft: () => { player.currentTime = Math.max(0, player.currentTime - 5); },
      ArrowRight: () => { player.currentTime = player.currentTime + 5; },
      ArrowUp: () => stepLine(-1), ArrowDown: () => stepLine(1),
      f: () => nextFlag(), F: () => nextFlag(),
      e: () => editLine(state.selected >= 0 ? state.selected : state.currentSeg),
      Enter: () => { if (state.selected >= 0) seek(state.segments[state.selected].start); },
    };
    const action = keys[e.key];
    if (!action || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    action();
  }

  function editLine(i) {
    if (i < 0 || !state.segments[i] || !state.current) return;
    const node = lineNode(i);
    if (!node || node.querySelector(".editor")) return;
    const seg = state.segments[i];
    const area = el("textarea", { id: `edit-${i}`, "data-testid": "edit-text", maxlength: "10000" });
    area.value = seg.text;
    const close = () => { editor.remove(); node.querySelector(".text").hidden = false; $("transcript-region").focus(); };
    const save = async () => {
      const text = area.value.trim();
      if (!text) return;
      try {
        renderDetail(await api(`/api/sessions/${state.current}/segments/${i}`, jsonBody({ text }, "PATCH")));
        select(i, false);
        $("line-announcer").textContent = "Line corrected. Regenerate the notes to use it.";
        $("transcript-region").focus();
      } catch (e) { status.textContent = `Not saved: ${e.message}`; }
    };
    const status = el("span", { class: "error", role: "status" });
    const editor = el("div", { class: "editor", "data-testid": "line-editor" },
      el("label", { for: `edit-${i}`, text: `Correct the line at ${clock(seg.start)}` }), area,
      el("div", { class: "row" },
        el("button", { type: "button", "data-testid": "edit-save", onclick: save, text: "Save" }),
        el("button", { type: "button", class: "secondary", onclick: close, text: "Cancel" }), status));
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); close(); }
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); save(); }
    });
    node.querySelector(".text").hidden = true;
    node.append(editor);
    area.focus();
  }

  // ---- notes ---------------------------------------------------------------------------
  function quoteButton(text, start, testid) {
    return el("button", { type: "button", class: "quote-link", "data-testid": testid, "data-start": String(start),
      "aria-label": `Play from ${clock(start)}: ${text}`, onclick: () => seek(start), text: `“${text}” (${clock(start)})` });
  }

  function listSection(title, items, render) {
    if (!items || !items.length) return null;
    return el("div", { class: "notes-section" }, el("h3", { text: title }),
      el("ul", {}, ...items.map((x) => el("li", {}, render ? render(x) : String(x)))));
  }
  function textSection(title, text, testid) {
    if (!text) return null;
    return el("div", { class: "notes-section", "data-testid": testid }, el("h3", { text: title }), el("p", { text }));
  }

  function riskSection(d, n) {
    const flags = d.risk_flags && d.risk_flags.length ? d.risk_flags : (n.risk_flags || []);
    const risk = el("div", { class: "notes-section", "data-testid": "risk-flags" }, el("h3", { text: "Risk flags" }));
    if (!flags.length) risk.append(el("p", { class: "muted", "data-testid": "no-risk", text: "No risk indicators detected." }));
    flags.forEach((f) => {
      const high = f.severity === "high" || f.high_priority;
      risk.append(el("div", { class: `risk ${high ? "high" : ""}`, "data-testid": "risk-flag", "data-severity": f.severity },
        el("span", { class: "sev", text: f.severity }), el("strong", { text: String(f.category).replace(/_/g, " ") }),
        el("div", {}, quoteButton(f.evidence, f.start, "risk-quote")),
        f.rationale ? el("div", { class: "muted", text: f.rationale }) : null));
    });
    return risk;
  }

  function renderNotes(d) {
    const n = d.extracted_notes;
    const err = $("notes-error");
    if (d.notes_error) {
      err.textContent = `Notes could not be generated: ${d.notes_error.message || d.notes_error.code || "error"}`;
      err.hidden = false;
    } else err.hidden = true;
    const engine = d.notes_engine || {};
    const at = engine.generated_at ? ` on ${new Date(engine.generated_at).toLocaleString()}` : "";
    $("notes-engine").textContent = engine.backend ? `Generated by ${engine.backend}${engine.model ? " (" + engine.model + ")" : ""}${at}` +
      (engine.backend === "offline" || engine.backend === "heuristic" ? " — heuristic extraction, review carefully" : "") : "";
    if (!n) return;
    const speakers = d.speakers || [];
    const parts = [riskSection(d, n),
      textSection("Summary", n.topic_summary, "notes-summary"),
      el("p", { "data-testid": "notes-mood", text: `Mood: ${n.session_mood || "?"} · trajectory: ${n.mood_trajectory || "?"}` }),
      listSection("Key topics", n.key_topics),
      listSection("Emotional themes", n.emotional_themes),
      listSection("Significant quotes", n.significant_quotes, (q) => el("span", {},
        el("span", { class: "muted", text: `${q.speaker_name || speakerName(q.speaker, q.role, speakers)}: ` }),
        quoteButton(q.quote, q.start, "quote"), q.why ? el("span", { class: "muted", text: ` — ${q.why}` }) : null)),
      listSection("Coping strategies", n.strategies, (s) => `${s.name} (${s.category}, ${s.status})`),
      listSection("Triggers", n.triggers),
      listSection("Homework and action items", n.action_items, (a) => `${a.task}${a.details ? " — " + a.details : ""}`),
      listSection("Follow-up topics", n.follow_up_topics),
      listSection("Unresolved concerns", n.unresolved_concerns),
      textSection("Therapist note", n.therapist_notes, "therapist-note"),
      textSection("Client summary", n.patient_summary, "client-summary")];
    $("notes").replaceChildren(...parts.filter(Boolean));
  }

  async function onRegenerate() {
    const id = state.current;
    if (!id) return;
    const fingerprint = (d) => JSON.stringify([d && d.extracted_notes, d && d.notes_engine]);
    const before = fingerprint(state.detail);
    const status = $("regenerate-status");
    $("regenerate").disabled = true;
    status.textContent = "Regenerating the notes from the corrected transcript…";
    try {
      await api(`/api/sessions/${id}/notes:regenerate`, jsonBody({}));
    } catch (e) {
      status.textContent = `Could not regenerate: ${e.message}`;
      $("regenerate").disabled = false;
      return;
    }
    const started = Date.now();
    const poll = async () => {
      if (state.current !== id) return;
      let d;
      try { d = await api(`/api/sessions/${id}`); } catch (_) { return; }
      const changed = fingerprint(d) !== before;
      if (changed || Date.now() - started > 10 * 60 * 1000) {
        $("regenerate").disabled = false;
        renderDetail(d);
        status.textContent = changed ? "Notes regenerated." : "The notes did not change (yet); try again later.";
        status.setAttribute("data-done", changed ? "true" : "false");
        return;
      }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 1500);
  }

  // ---- wiring --------------------------------------------------------------------------
  async function deleteCurrent() {
    if (!state.current || !window.confirm("Delete this session, its recording, transcript and notes?")) return;
    try {
      await api(`/api/sessions/${state.current}`, { method: "DELETE" });
      closeSession();
      window.location.hash = "#/";
    } catch (e) { flash(`Could not delete: ${e.message}`); }
  }

  function wirePlayer() {
    const player = $("player");
    player.addEventListener("timeupdate", () => highlight(player.currentTime, !player.paused));
    player.addEventListener("seeked", () => highlight(player.currentTime, true));
    // an audio link that expired during a long listen: mint a new one, keep the position
    let lastAudioRetry = 0;
    player.addEventListener("error", () => {
      const at = player.currentTime, id = state.current;
      if (!id || !player.getAttribute("src") || Date.now() - lastAudioRetry < 60000) return;  // not a loop on 404
      lastAudioRetry = Date.now();
      setPlayerSource(id).then(() => { player.currentTime = at; }).catch(() => {});
    });
    $("transcript-region").addEventListener("keydown", onTranscriptKey);
    $("player-bar").addEventListener("keydown", (e) => {
      if (e.target === player || e.target.tagName === "BUTTON") return;
      onTranscriptKey(e);
    });
    $("prev-line").addEventListener("click", () => stepLine(-1));
    $("next-line").addEventListener("click", () => stepLine(1));
    $("next-flag").addEventListener("click", nextFlag);
    $("shortcuts-toggle").addEventListener("click", () => {
      const open = $("shortcuts").hidden;
      $("shortcuts").hidden = !open;
      $("shortcuts-toggle").setAttribute("aria-expanded", String(open));
    });
  }

  function wireHome() {
    $("patient-form").addEventListener("submit", onCreatePatient);
    $("patient-search").addEventListener("input", renderPatients);
    $("patient-rename").addEventListener("click", startRename);
    $("patient-edit-form").addEventListener("submit", onRename);
    $("patient-edit-cancel").addEventListener("click", () => { $("patient-edit-form").hidden = true; });
    $("patient-delete").addEventListener("click", onDeletePatient);
    const reload = () => loadSessions().catch((e) => flash(`Could not load sessions: ${e.message}`));
    $("session-search").addEventListener("input", debounce(reload, 250));
    $("session-status").addEventListener("change", reload);
    $("session-sort").addEventListener("change", reload);
    $("sessions-more").addEventListener("click", () => loadSessions(true).catch(() => {}));
    $("upload-date").value = todayIso();
    setupDropzone();
  }

  document.addEventListener("DOMContentLoaded", () => {
    setSignedIn(false);
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", signOutEverywhere);
    $("delete-session").addEventListener("click", deleteCurrent);
    $("retry").addEventListener("click", onRetry);
    $("cancel").addEventListener("click", onCancel);
    $("regenerate").addEventListener("click", onRegenerate);
    $("speakers-form").addEventListener("submit", onSaveSpeakers);
    wireHome();
    wirePlayer();
    for (const name of ["keydown", "pointerdown", "scroll"]) {
      document.addEventListener(name, () => { state.lastActive = Date.now(); }, { passive: true, capture: true });
    }
    window.addEventListener("hashchange", () => { route().catch(() => {}); });
    if (state.token) enterApp().catch(() => signOut(""));
  });

})();
