/* TherapyBridge web page: plain, build-free JavaScript.
 * Privacy: never write transcript text, notes or names to the console. All user data is
 * inserted with textContent (never innerHTML). */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = window.sessionStorage;
  const STAGE_LABELS = { upload: "Upload", preprocessing: "Preprocessing", transcription: "Transcription",
    diarization: "Speakers", join: "Merge", merge: "Merge", notes: "Notes" };
  const STAGE_ORDER = ["upload", "preprocessing", "transcription", "diarization", "join", "merge", "notes"];
  const EXPORTS = [["txt", "Transcript (.txt)"], ["json", "Transcript (.json)"], ["srt", "Subtitles (.srt)"],
    ["vtt", "Subtitles (.vtt)"], ["rttm", "Diarization (.rttm)"], ["notes.json", "Notes (.json)"],
    ["soap", "SOAP note (.md)"], ["dap", "DAP note (.md)"], ["docx", "Word document (.docx)"]];
  const TERMINAL = ["processed", "failed"];

  const state = { token: STORE.getItem("tb.token"), refresh: STORE.getItem("tb.refresh"), patients: [],
    current: null, source: null, segments: [], currentSeg: -1 };

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
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function clock(t) {
    t = Math.max(0, Math.floor(t || 0));
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
    return `about ${Math.round(seconds / 60)} min left`;
  }
  function flash(message) {
    const f = $("flash");
    f.textContent = message || "";
    f.hidden = !message;
  }
  // URLs the browser opens itself (audio element, download links, EventSource) cannot carry
  // the Authorization header: they get a short-lived signed link for one session and one
  // purpose (never the access token, which would end up in history and server logs).
  async function linkedUrl(id, purpose, path) {
    const link = await api(`/api/sessions/${id}/links`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ purpose }) });
    return { url: `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(link.token)}`,
      expiresAt: Date.now() + 1000 * link.expires_in };
  }

  // Each refresh token works once (a replay signs everyone out): concurrent 401s share one refresh.
  let refreshing = null;
  function refreshToken() {
    if (!refreshing) refreshing = doRefresh().finally(() => { refreshing = null; });
    return refreshing;
  }
  async function doRefresh() {
    if (!state.refresh) return false;
    const r = await fetch("/api/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: state.refresh }) });
    if (!r.ok) return false;
    saveTokens(await r.json());
    return true;
  }

  async function api(path, options = {}, retried = false) {
    const headers = Object.assign({}, options.headers || {}, { Authorization: `Bearer ${state.token}` });
    const sent = state.token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401 && !retried) {
      // another request may have refreshed meanwhile: retry with its token before refreshing again
      if (state.token && state.token !== sent) return api(path, options, true);
      if (await refreshToken()) return api(path, options, true);
    }
    if (response.status === 401) {
      signOut("Your sign-in expired; please sign in again.");
      throw new Error("not authenticated");
    }
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

  // ---- auth ----------------------------------------------------------------------------
  function saveTokens(body) {
    state.token = body.access_token;
    state.refresh = body.refresh_token || state.refresh;
    STORE.setItem("tb.token", state.token);
    if (state.refresh) STORE.setItem("tb.refresh", state.refresh);
  }

  function signOut(message) {
    closeStream();
    state.token = state.refresh = null;
    STORE.removeItem("tb.token");
    STORE.removeItem("tb.refresh");
    $("app-view").hidden = true;
    $("whoami").hidden = true;
    $("login-view").hidden = false;
    flash(message || "");
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
    const r = await fetch("/api/auth/token", { method: "POST", body: form });
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
    try {
      const me = await api("/api/auth/me");
      $("whoami-name").textContent = me.display_name || me.email;
    } catch (_) { return; }
    flash("");
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("whoami").hidden = false;
    await Promise.all([loadPatients(), loadSessions()]);
  }

  // ---- patients ------------------------------------------------------------------------
  async function loadPatients() {
    state.patients = await api("/api/patients");
    const list = $("patient-list");
    list.replaceChildren(...state.patients.map((p) => el("li", { "data-testid": "patient-item", text: p.display_name })));
    if (!state.patients.length) list.append(el("li", { class: "muted", text: "No patients yet" }));
    const select = $("upload-patient");
    const keep = select.value;
    select.replaceChildren(el("option", { value: "", text: "(none)" }),
      ...state.patients.map((p) => el("option", { value: p.id, text: p.display_name })));
    select.value = keep;
  }

  async function onCreatePatient(ev) {
    ev.preventDefault();
    const name = $("patient-name").value.trim();
    if (!name) return;
    try {
      const p = await api("/api/patients", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ display_name: name }) });
      $("patient-name").value = "";
      await loadPatients();
      $("upload-patient").value = p.id;
    } catch (e) { flash(`Could not add the patient: ${e.message}`); }
  }

  // ---- sessions list -------------------------------------------------------------------
  function patientName(id) {
    const p = state.patients.find((x) => x.id === id);
    return p ? p.display_name : "";
  }

  async function loadSessions() {
    const data = await api("/api/sessions?limit=50");
    const list = $("session-list");
    list.replaceChildren(...data.items.map((s) => el("li", { "data-testid": "session-item", "data-session-id": s.id },
      el("button", { type: "button", class: "linklike", onclick: () => openSession(s.id),
        text: `${s.audio_filename || "recording"}${patientName(s.patient_id) ? " · " + patientName(s.patient_id) : ""}` }),
      el("span", { class: "status", text: `${s.status} ${s.progress}% · ${new Date(s.created_at).toLocaleString()}` +
        (s.quality_warning_count ? ` · ${s.quality_warning_count} to review` : "") }))));
    if (!data.items.length) list.append(el("li", { class: "muted", text: "No sessions yet" }));
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
    try {
      const res = await api("/api/sessions/upload", { method: "POST", body: form });
      status.textContent = `Uploaded; processing started.`;
      $("upload-file").value = "";
      await loadSessions();
      await openSession(res.id);
    } catch (e) {
      status.textContent = `Upload rejected: ${e.message}`;
    }
  }

  function setupDropzone() {
    const zone = $("dropzone");
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
    zone.addEventListener("drop", (e) => uploadFile(e.dataTransfer.files[0]));
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("upload-file").click(); } });
    $("upload-file").addEventListener("change", (e) => uploadFile(e.target.files[0]));
  }

  // ---- one session ---------------------------------------------------------------------
  function closeStream() {
    if (state.source) { state.source.close(); state.source = null; }
  }

  async function openSession(id) {
    closeStream();
    state.current = id;
    state.segments = [];
    state.currentSeg = -1;
    $("session-view").hidden = false;
    $("session-view").setAttribute("data-session-id", id);
    $("transcript").replaceChildren();
    $("speakers").replaceChildren();
    $("notes").replaceChildren(el("p", { class: "muted", text: "Notes appear when processing finishes." }));
    $("notes-engine").textContent = "";
    $("notes-error").hidden = true;
    setPlayerSource(id).catch(() => {});
    renderExports(id).catch(() => {});
    let detail;
    try { detail = await api(`/api/sessions/${id}`); } catch (e) { flash(`Could not open the session: ${e.message}`); return; }
    renderDetail(detail);
    if (!TERMINAL.includes(detail.status)) followStatus(id);
  }

  async function setPlayerSource(id) {
    const { url } = await linkedUrl(id, "audio", `/api/sessions/${id}/audio`);
    if (state.current === id) $("player").src = url;
  }

  async function renderExports(id) {
    let link = await linkedUrl(id, "export", `/api/sessions/${id}/export/FMT`);
    if (state.current !== id) return;
    const hrefOf = (fmt) => link.url.replace("/export/FMT?", `/export/${encodeURIComponent(fmt)}?`);
    const onClick = async (ev) => {
      if (Date.now() < link.expiresAt - 15000) return;  // still valid: the browser follows the href
      ev.preventDefault();  // expired while the page was open: mint a new link, then download
      const anchor = ev.currentTarget;
      link = await linkedUrl(id, "export", `/api/sessions/${id}/export/FMT`);
      for (const a of $("exports").querySelectorAll("a")) a.href = hrefOf(a.getAttribute("data-format"));
      anchor.click();
    };
    $("exports").replaceChildren(...EXPORTS.map(([fmt, label]) => el("a", {
      href: hrefOf(fmt), download: "", "data-testid": `export-${fmt}`, "data-format": fmt, text: label,
      onclick: onClick })));
  }

  function renderProgress(msg) {
    const pct = Math.max(0, Math.min(100, Math.round(msg.progress || 0)));
    const bar = $("overall-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.classList.toggle("done", msg.status === "processed");
    bar.classList.toggle("failed", msg.status === "failed");
    $("overall-fill").style.width = `${pct}%`;
    $("overall-text").textContent = `${pct} %`;
    bar.setAttribute("data-status", msg.status);
    const left = TERMINAL.includes(msg.status) ? "" : eta(msg.estimated_time_remaining);
    $("status-line").textContent = [msg.status, msg.message, left].filter(Boolean).join(" · ");
    const stages = $("stage-bars");
    const rank = (n) => (STAGE_ORDER.indexOf(n) < 0 ? 99 : STAGE_ORDER.indexOf(n));
    const entries = Object.entries(msg.stages || {}).sort((a, b) => rank(a[0]) - rank(b[0]));
    stages.replaceChildren(...entries.map(([name, st]) => {
      const sp = Math.round(100 * (st.state === "done" || st.state === "skipped" ? 1 : st.fraction || 0));
      const label = STAGE_LABELS[name] || name;
      const barNode = el("div", { class: `bar ${st.state === "done" ? "done" : ""} ${st.state === "failed" ? "failed" : ""}`,
        role: "progressbar", "aria-label": `${label} progress`, "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": String(sp) }, el("div", { class: "fill" }));
      barNode.firstChild.style.width = `${sp}%`;
      const extra = st.state === "running" ? eta(st.eta_s) : st.state;
      return el("div", { class: "bar-row", "data-testid": `stage-${name}`, "data-state": st.state },
        el("span", { class: "bar-label", text: label }), barNode,
        el("span", { class: "bar-text", text: `${sp} %${extra ? " · " + extra : ""}` }));
    }));
    $("warnings").replaceChildren(...(msg.warnings || []).map((w) => el("li", { "data-testid": "warning", text: w })));
    const err = $("session-error");
    err.textContent = msg.error ? `Processing failed: ${msg.error}` : "";
    err.hidden = !msg.error;
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
      renderProgress(msg);
    };
    source.addEventListener("progress", onMessage);
    source.addEventListener("complete", async (ev) => {
      onMessage(ev);
      source.close();
      if (state.source === source) state.source = null;
      if (state.current === id) {
        try { renderDetail(await api(`/api/sessions/${id}`)); } catch (_) { /* shown by api() */ }
      }
      loadSessions().catch(() => {});
    });
    source.onerror = () => {
      // EventSource reconnects by itself (with Last-Event-ID); if the stream is gone for good, poll once.
      if (source.readyState === EventSource.CLOSED && state.current === id) {
        api(`/api/sessions/${id}`).then((d) => { renderDetail(d); if (!TERMINAL.includes(d.status)) setTimeout(() => followStatus(id), 2000); })
          .catch(() => {});
      }
    };
  }

  function renderDetail(d) {
    const when = d.session_date || d.created_at;
    $("session-title").textContent = d.audio_filename || "Session";
    $("session-meta").textContent = [patientName(d.patient_id), when ? new Date(when).toLocaleString() : "",
      d.duration_seconds ? `${clock(d.duration_seconds)} long` : "", d.language ? `language ${d.language}` : "",
      d.diarized === false ? "speakers not separated" : ""].filter(Boolean).join(" · ");
    renderProgress({ status: d.status, progress: d.progress, message: d.message, stages: d.stages,
      estimated_time_remaining: d.estimated_time_remaining, warnings: d.warnings, error: d.error });
    renderTranscript(d);
    renderQuality(d.quality_warnings || []);
    renderNotes(d);
  }

  // Transcript quality checks: each with a button that plays its span.
  function renderQuality(warnings) {
    $("quality-warnings").replaceChildren(...warnings.map((w) => el("li", { "data-testid": "quality-warning",
      "data-kind": w.kind, "data-severity": w.severity },
      el("span", { text: `${w.severity === "warning" ? "⚠" : "ℹ"} ${w.message} ` }),
      w.start_s == null ? null : el("button", { type: "button", class: "quote-link", "data-testid": "quality-seek",
        "data-start": String(w.start_s), "aria-label": `Play from ${clock(w.start_s)}`, onclick: () => seek(w.start_s),
        text: `Review ${clock(w.start_s)}` }))));
  }

  // ---- transcript + player -------------------------------------------------------------
  function speakerIndex(speakers) {
    const idx = {};
    speakers.forEach((s, i) => { idx[s.label] = i % 6; });
    return idx;
  }
  function speakerName(label, role, speakers) {
    const s = speakers.find((x) => x.label === label);
    if (s && s.display_name) return s.display_name;
    return (s && s.role) || role || label || "Unknown";
  }

  function renderTranscript(d) {
    const segments = d.transcript_segments || [];
    const speakers = d.speakers || [];
    const idx = speakerIndex(speakers);
    state.segments = segments;
    state.currentSeg = -1;
    $("speakers").replaceChildren(...speakers.map((s) => el("span", {
      class: `chip spk-${idx[s.label]}`, "data-testid": "speaker-chip", "data-label": s.label,
      text: `${speakerName(s.label, s.role, speakers)}${s.display_name || s.role ? " (" + s.label + ")" : ""}` +
        (s.talk_time_s ? ` · ${clock(s.talk_time_s)}` : "") })));
    const list = $("transcript");
    if (!segments.length) {
      list.replaceChildren(el("li", { class: "muted", text: TERMINAL.includes(d.status) ? "No transcript." : "The transcript appears when it is ready." }));
      return;
    }
    list.replaceChildren(...segments.map((seg, i) => {
      const label = seg.speaker || "";
      const who = label ? speakerName(label, seg.role, speakers) : "—";
      const cls = label in idx ? `spk-${idx[label]}` : "spk-5";
      return el("li", { class: `seg ${cls}`, tabindex: "0", role: "button", "data-testid": "transcript-line",
        "data-index": String(i), "data-start": String(seg.start), "data-end": String(seg.end),
        "data-speaker": label, "data-role": seg.role || "", "aria-label": `Play from ${clock(seg.start)}`,
        onclick: () => seek(seg.start), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); seek(seg.start); } } },
        el("span", { class: "time", text: clock(seg.start) }),
        el("span", { class: "who", "data-testid": "transcript-speaker", text: who }),
        el("span", { class: "text", text: seg.text }));
    }));
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

  function highlight(t, scroll) {
    const segs = state.segments;
    let found = -1;
    for (let i = 0; i < segs.length; i++) {
      if (t >= segs[i].start && t < segs[i].end) { found = i; break; }
      if (segs[i].start > t) break;
    }
    if (found === state.currentSeg) return;
    const list = $("transcript");
    const prev = list.querySelector(".seg.current");
    if (prev) { prev.classList.remove("current"); prev.removeAttribute("aria-current"); }
    state.currentSeg = found;
    if (found >= 0) {
      const node = list.querySelector(`[data-index="${found}"]`);
      if (node) {
        node.classList.add("current");
        node.setAttribute("aria-current", "true");
        if (scroll && node.scrollIntoView) node.scrollIntoView({ block: "nearest" });
      }
    }
  }

  // ---- notes ---------------------------------------------------------------------------
  function quoteButton(text, start, testid) {
    return el("button", { type: "button", class: "quote-link", "data-testid": testid, "data-start": String(start),
      "aria-label": `Play from ${clock(start)}`, onclick: () => seek(start), text: `“${text}” (${clock(start)})` });
  }

  function listSection(title, items, render) {
    if (!items || !items.length) return null;
    return el("div", { class: "notes-section" }, el("h4", { text: title }),
      el("ul", {}, ...items.map((x) => el("li", {}, render ? render(x) : String(x)))));
  }
  function textSection(title, text, testid) {
    if (!text) return null;
    return el("div", { class: "notes-section", "data-testid": testid }, el("h4", { text: title }), el("p", { text }));
  }

  function renderNotes(d) {
    const n = d.extracted_notes;
    const err = $("notes-error");
    if (d.notes_error) {
      err.textContent = `Notes could not be generated: ${d.notes_error.message || d.notes_error.code || "error"}`;
      err.hidden = false;
    } else err.hidden = true;
    const engine = d.notes_engine || {};
    $("notes-engine").textContent = engine.backend ? `Generated by ${engine.backend}${engine.model ? " (" + engine.model + ")" : ""}` +
      (engine.backend === "offline" || engine.backend === "heuristic" ? " — heuristic extraction, review carefully" : "") : "";
    const box = $("notes");
    if (!n) return;
    const flags = d.risk_flags && d.risk_flags.length ? d.risk_flags : (n.risk_flags || []);
    const risk = el("div", { class: "notes-section", "data-testid": "risk-flags" }, el("h4", { text: "Risk flags" }));
    if (!flags.length) risk.append(el("p", { class: "muted", "data-testid": "no-risk", text: "No risk indicators detected." }));
    flags.forEach((f) => {
      const high = f.severity === "high" || f.high_priority;
      risk.append(el("div", { class: `risk ${high ? "high" : ""}`, "data-testid": "risk-flag", "data-severity": f.severity,
        role: high ? "alert" : null },
        el("span", { class: "sev", text: f.severity }), el("strong", { text: String(f.category).replace(/_/g, " ") }),
        el("div", {}, quoteButton(f.evidence, f.start, "risk-quote")),
        f.rationale ? el("div", { class: "muted", text: f.rationale }) : null));
    });
    const parts = [risk,
      textSection("Summary", n.topic_summary, "notes-summary"),
      el("p", { "data-testid": "notes-mood", text: `Mood: ${n.session_mood || "?"} · trajectory: ${n.mood_trajectory || "?"}` }),
      listSection("Key topics", n.key_topics),
      listSection("Emotional themes", n.emotional_themes),
      listSection("Significant quotes", n.significant_quotes, (q) => el("span", {},
        el("span", { class: "muted", text: `${speakerName(q.speaker, q.role, d.speakers || [])}: ` }),
        quoteButton(q.quote, q.start, "quote"), q.why ? el("span", { class: "muted", text: ` — ${q.why}` }) : null)),
      listSection("Coping strategies", n.strategies, (s) => `${s.name} (${s.category}, ${s.status})`),
      listSection("Triggers", n.triggers),
      listSection("Homework and action items", n.action_items, (a) => `${a.task}${a.details ? " — " + a.details : ""}`),
      listSection("Follow-up topics", n.follow_up_topics),
      listSection("Unresolved concerns", n.unresolved_concerns),
      textSection("Therapist note", n.therapist_notes, "therapist-note"),
      textSection("Client summary", n.patient_summary, "client-summary")];
    box.replaceChildren(...parts.filter(Boolean));
  }

  // ---- wiring --------------------------------------------------------------------------
  async function deleteCurrent() {
    if (!state.current || !window.confirm("Delete this session, its recording, transcript and notes?")) return;
    try {
      await api(`/api/sessions/${state.current}`, { method: "DELETE" });
      closeStream();
      $("player").removeAttribute("src");
      $("session-view").hidden = true;
      state.current = null;
      await loadSessions();
    } catch (e) { flash(`Could not delete: ${e.message}`); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", signOutEverywhere);
    $("patient-form").addEventListener("submit", onCreatePatient);
    $("sessions-refresh").addEventListener("click", () => loadSessions().catch(() => {}));
    $("delete-session").addEventListener("click", deleteCurrent);
    $("player").addEventListener("timeupdate", (e) => highlight(e.target.currentTime, !e.target.paused));
    $("player").addEventListener("seeked", (e) => highlight(e.target.currentTime, false));
    // an audio link that expired during a long listen: mint a new one, keep the position
    let lastAudioRetry = 0;
    $("player").addEventListener("error", () => {
      const player = $("player"), at = player.currentTime, id = state.current;
      if (!id || !player.getAttribute("src") || Date.now() - lastAudioRetry < 60000) return;  // not a loop on 404
      lastAudioRetry = Date.now();
      setPlayerSource(id).then(() => { player.currentTime = at; }).catch(() => {});
    });
    setupDropzone();
    if (state.token) enterApp().catch(() => signOut(""));
  });
})();
