/* TherapyBridge: review and sign-off of a session's clinical notes (docs/adr/0008-notes-review-and-sign-off.md).
 *
 * Contract with the page: window.TBReview.mount(container, sessionId, api)
 *   container  an empty <section data-testid="notes-review">
 *   sessionId  the session's id
 *   api        the page's authenticated fetch helper: api(path, options) -> Promise<Response>
 * It renders the version list, an edit form for every notes field, confirm / dismiss (with
 * a reason) for each risk flag, Approve & Sign, the addendum form once signed, and
 * "Copy for EHR". After every change it dispatches "tbreview:changed" (bubbling) on the
 * container, so the page can refresh what it shows.
 * Privacy: nothing of the notes goes to the console; user data is inserted with
 * textContent / value only (never innerHTML). */
"use strict";

(function () {
  const LIST_FIELDS = [["key_topics", "Key topics"], ["emotional_themes", "Emotional themes"], ["triggers", "Triggers"],
    ["follow_up_topics", "Follow-up topics"], ["unresolved_concerns", "Unresolved concerns"]];
  const TEXT_FIELDS = [["topic_summary", "Summary"], ["therapist_notes", "Therapist note"], ["patient_summary", "Client summary"]];
  const MOODS = ["very_low", "low", "neutral", "positive", "very_positive", "mixed"];
  const TRAJECTORIES = ["improving", "declining", "stable", "fluctuating"];
  const OBJECT_FIELDS = {
    strategies: { label: "Interventions and coping strategies", keys: [["name", "Name"], ["category", "Category"],
      ["status", "Status"], ["context", "Context"]], blank: { name: "", category: "cognitive", status: "introduced", context: "" } },
    action_items: { label: "Homework and action items", keys: [["task", "Task"], ["category", "Category"],
      ["details", "Details"], ["owner", "Owner"]], blank: { task: "", category: "homework", details: "", owner: "client" } },
  };
  const STYLE = `
.tbr h3 { margin: 0 0 6px; } .tbr fieldset { border: 1px solid #d5dae1; border-radius: 6px; margin: 10px 0; padding: 8px 10px; }
.tbr legend { font-weight: 700; } .tbr textarea { width: 100%; min-height: 4.5em; font: inherit; padding: 4px 6px; }
.tbr input[type=text] { width: 100%; padding: 4px 6px; } .tbr .tbr-row { display: grid; grid-template-columns: repeat(4, 1fr) auto; gap: 6px; align-items: end; margin: 4px 0; }
.tbr .tbr-flag { border: 1px solid #d5dae1; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.tbr .tbr-flag[data-severity=high] { border-width: 2px; border-color: #b3261e; }
.tbr .tbr-state { font-weight: 700; } .tbr .tbr-versions li { margin: 3px 0; }
.tbr details { border: 1px solid #d5dae1; border-radius: 6px; margin: 10px 0; padding: 8px 10px; }
.tbr summary { font-weight: 700; cursor: pointer; }
.tbr pre { white-space: pre-wrap; background: #f6f7f9; padding: 8px; border-radius: 4px; max-height: 40vh; overflow: auto; }
.tbr .tbr-status { font-weight: 700; padding: 4px 8px; border-radius: 4px; background: #eef4ff; display: inline-block; }
.tbr .tbr-status[data-status=signed] { background: #e3f4e5; }`;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "value") node.value = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }
  function clock(t) {
    t = Math.max(0, Math.floor(Number(t) || 0));
    return `${String(Math.floor(t / 60)).padStart(2, "0")}:${String(t % 60).padStart(2, "0")}`;
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
  function ensureStyle() {
    if (document.getElementById("tbr-style")) return;
    document.head.append(el("style", { id: "tbr-style", text: STYLE }));
  }

  function mount(container, sessionId, api) {
    ensureStyle();
    container.classList.add("card", "tbr");
    container.setAttribute("aria-labelledby", "tbr-title");
    const base = `/api/sessions/${encodeURIComponent(sessionId)}`;
    const ui = { review: null, token: {} };
    container.__tbreview = ui.token;
    const alive = () => container.isConnected && container.__tbreview === ui.token;
    const message = el("p", { role: "status", "aria-live": "polite", "data-testid": "review-message", class: "muted" });
    const error = el("p", { role: "alert", "data-testid": "review-error", class: "error", hidden: true });
    const body = el("div", { "data-testid": "review-body" });
    container.replaceChildren(el("h3", { id: "tbr-title", text: "Review and sign-off" }), message, error, body);

    function say(text) { message.textContent = text || ""; }
    function fail(text) { error.textContent = text || ""; error.hidden = !text; }

    async function call(path, options) {
      const init = Object.assign({}, options || {});
      if (init.json !== undefined) {
        init.body = JSON.stringify(init.json);
        init.headers = Object.assign({ "Content-Type": "application/json" }, init.headers || {});
        delete init.json;
      }
      const res = await api(base + path, init);
      let data = null;
      const type = res.headers.get("content-type") || "";
      if (type.includes("json")) { try { data = await res.json(); } catch (_) { data = null; } }
      else data = await res.text();
      return { ok: res.ok, status: res.status, data };
    }
    function reason(result) {
      const d = result.data && result.data.detail;
      return typeof d === "string" ? d : `request failed (${result.status})`;
    }

    async function load() {
      const result = await call("/notes/review");
      if (!alive()) return;
      if (result.status === 409) {
        say("The notes can be reviewed once processing has finished.");
        body.replaceChildren();
        setTimeout(() => { if (alive()) load().catch(() => {}); }, 5000);
        return;
      }
      if (!result.ok) { fail(`Could not load the notes for review: ${reason(result)}`); return; }
      ui.review = result.data;
      render();
    }

    async function change(path, json, done) {
      fail("");
      const result = await call(path, { method: path.endsWith("/notes") ? "PATCH" : "POST", json });
      if (!result.ok) {
        fail(result.status === 409 && result.data && result.data.code === "stale_version"
          ? `${reason(result)}. The notes were reloaded: apply your change again.` : reason(result));
        if (result.status === 409) await load();
        return false;
      }
      say(done);
      if (result.data && result.data.session_id) { ui.review = result.data; render(); } else await load();
      container.dispatchEvent(new CustomEvent("tbreview:changed", { bubbles: true,
        detail: { sessionId, version: ui.review && ui.review.current_version } }));
      return true;
    }

    // ---- status --------------------------------------------------------------------------
    function statusLine(r) {
      if (r.status === "signed") {
        const s = r.signature;
        return `Signed by ${s.signed_by_name} on ${when(s.signed_at)} — version ${s.version}, locked (changes go in addenda)`;
      }
      return `Draft, not signed — version ${r.current_version}`;
    }

    // ---- risk flags ----------------------------------------------------------------------
    function flagReviewText(rv) {
      if (!rv || !rv.status || rv.status === "unreviewed") return "Not reviewed yet";
      const verb = rv.status === "confirmed" ? "Confirmed" : "Dismissed";
      return `${verb} by ${rv.by_name || "the clinician"} on ${when(rv.at)}` +
        (rv.severity_before ? ` (severity was ${rv.severity_before})` : "") + (rv.reason ? `: ${rv.reason}` : "");
    }
    function flagItem(f, locked) {
      const id = f.flag_id;
      const rv = f.review || {};
      const high = f.severity === "high" || f.high_priority;
      const reasonId = `tbr-reason-${id}`;
      const reasonInput = el("input", { type: "text", id: reasonId, maxlength: "2000", "data-testid": "flag-reason" });
      const controls = locked ? null : el("div", {},
        el("label", { for: reasonId, text: "Reason (required to dismiss)" }), reasonInput,
        el("button", { type: "button", "data-testid": "flag-confirm", text: "Confirm flag",
          onclick: () => change(`/notes/flags/${encodeURIComponent(id)}/review`, { base_version: ui.review.current_version,
            decision: "confirmed", reason: reasonInput.value }, "Risk flag confirmed.") }), " ",
        el("button", { type: "button", "data-testid": "flag-dismiss", text: "Dismiss flag",
          onclick: () => {
            if (!reasonInput.value.trim()) { fail("Give a reason to dismiss this risk flag."); reasonInput.focus(); return; }
            change(`/notes/flags/${encodeURIComponent(id)}/review`, { base_version: ui.review.current_version,
              decision: "dismissed", reason: reasonInput.value }, "Risk flag dismissed (it stays on record).");
          } }));
      return el("li", { class: "tbr-flag", "data-testid": "review-flag", "data-flag-id": id,
        "data-review-status": rv.status || "unreviewed", "data-severity": f.severity },
        el("div", {}, el("span", { class: "tbr-state", text: `${high ? "HIGH PRIORITY · " : ""}${String(f.category).replace(/_/g, " ")}` }),
          ` · severity ${f.severity} · at ${clock(f.start)} · source ${f.source}`),
        el("div", { text: `“${f.evidence}”` }),
        el("div", { "data-testid": "flag-review-status", text: `Review: ${flagReviewText(rv)}` }), controls);
    }
    function flagsSection(r, locked) {
      const flags = (r.notes.risk_flags || []);
      const list = el("ul", { class: "plain-list", "data-testid": "review-flags" }, ...flags.map((f) => flagItem(f, locked)));
      return el("fieldset", {}, el("legend", { text: `Risk flags (${flags.length})` }),
        flags.length ? list : el("p", { class: "muted", text: "No risk flags were raised." }));
    }

    // ---- the edit form -------------------------------------------------------------------
    function textArea(name, label, value) {
      const id = `tbr-${name}`;
      return el("div", {}, el("label", { for: id, text: label }),
        el("textarea", { id, name, "data-testid": `field-${name}`, value: value || "" }));
    }
    function select(name, label, options, value) {
      const id = `tbr-${name}`;
      const node = el("select", { id, name, "data-testid": `field-${name}` },
        ...options.map((o) => el("option", { value: o, text: o.replace(/_/g, " ") })));
      node.value = value;
      return el("div", {}, el("label", { for: id, text: label }), node);
    }
    function objectRows(field, items) {
      const spec = OBJECT_FIELDS[field];
      const rows = el("div", { "data-testid": `field-${field}` });
      const addRow = (item, i) => {
        const row = el("div", { class: "tbr-row", "data-testid": `${field}-row`, "data-original": JSON.stringify(item) },
          ...spec.keys.map(([key, label]) => {
            const id = `tbr-${field}-${i}-${key}`;
            return el("div", {}, el("label", { for: id, text: label }),
              el("input", { type: "text", id, "data-key": key, value: item[key] || "" }));
          }),
          el("button", { type: "button", text: "Remove", "aria-label": `Remove ${spec.label.toLowerCase()} ${i + 1}`,
            onclick: () => row.remove() }));
        rows.append(row);
      };
      items.forEach(addRow);
      const add = el("button", { type: "button", "data-testid": `add-${field}`, text: "Add",
        "aria-label": `Add to ${spec.label.toLowerCase()}`, onclick: () => addRow(Object.assign({}, spec.blank), rows.children.length) });
      return el("fieldset", {}, el("legend", { text: spec.label }), rows, add);
    }
    function quoteRows(quotes) {
      const rows = el("div", {});
      quotes.forEach((q, i) => {
        const id = `tbr-quote-${i}`;
        const row = el("div", { class: "tbr-quote", "data-testid": "significant_quotes-row", "data-original": JSON.stringify(q) },
          el("p", { text: `${clock(q.start)} ${q.role || q.speaker}: “${q.quote}”` }),
          el("label", { for: id, text: "Why it matters" }), el("input", { type: "text", id, "data-key": "why", value: q.why || "" }),
          el("button", { type: "button", text: "Remove quote", "aria-label": `Remove quote ${i + 1}`, onclick: () => row.remove() }));
        rows.append(row);
      });
      return el("fieldset", { "data-testid": "field-significant_quotes" },
        el("legend", { text: "Significant quotes (verbatim: only the reason can be edited)" }),
        quotes.length ? rows : el("p", { class: "muted", text: "No quotes." }));
    }
    function readRows(form, field) {
      return [...form.querySelectorAll(`[data-testid="${field}-row"]`)].map((row) => {
        const item = Object.assign({}, JSON.parse(row.getAttribute("data-original") || "{}"));
        row.querySelectorAll("input[data-key]").forEach((input) => { item[input.getAttribute("data-key")] = input.value.trim(); });
        return item;
      });
    }
    function readForm(form) {
      const notes = {};
      for (const [name] of TEXT_FIELDS) notes[name] = form.elements[name].value;
      for (const [name] of LIST_FIELDS) notes[name] = form.elements[name].value.split("\n").map((s) => s.trim()).filter(Boolean);
      notes.session_mood = form.elements.session_mood.value;
      notes.mood_trajectory = form.elements.mood_trajectory.value;
      notes.strategies = readRows(form, "strategies").filter((s) => s.name);
      notes.action_items = readRows(form, "action_items").filter((a) => a.task);
      notes.significant_quotes = readRows(form, "significant_quotes");
      return notes;
    }
    function editForm(r) {
      const n = r.notes;
      const form = el("form", { "data-testid": "review-form", "aria-label": "Edit the notes" },
        textArea("topic_summary", "Summary", n.topic_summary),
        select("session_mood", "Session mood", MOODS, n.session_mood),
        select("mood_trajectory", "Mood trajectory", TRAJECTORIES, n.mood_trajectory),
        ...LIST_FIELDS.map(([name, label]) => textArea(name, `${label} (one per line)`, (n[name] || []).join("\n"))),
        objectRows("strategies", n.strategies || []), objectRows("action_items", n.action_items || []),
        quoteRows(n.significant_quotes || []),
        textArea("therapist_notes", "Therapist note", n.therapist_notes),
        textArea("patient_summary", "Client summary", n.patient_summary),
        el("button", { type: "submit", "data-testid": "review-save", text: `Save as version ${r.current_version + 1}` }));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        change("/notes", { base_version: ui.review.current_version, notes: readForm(form) }, "Saved as a new version.");
      });
      const details = el("details", { "data-testid": "review-edit", open: ui.editOpen },
        el("summary", { text: "Edit the notes (every field)" }), form);
      details.addEventListener("toggle", () => { ui.editOpen = details.open; });
      return details;
    }

    // ---- sign, addenda -------------------------------------------------------------------
    function signSection(r) {
      const attest = el("input", { type: "checkbox", id: "tbr-attest", "data-testid": "sign-attest" });
      const button = el("button", { type: "button", "data-testid": "review-sign", disabled: true,
        text: `Approve & Sign version ${r.current_version}`,
        onclick: () => change("/notes:sign", { base_version: ui.review.current_version }, "Signed. The notes are locked.") });
      attest.addEventListener("change", () => { button.disabled = !attest.checked; });
      const pending = r.unreviewed_flags || [];
      return el("fieldset", { "data-testid": "sign-section" }, el("legend", { text: "Approve and sign" }),
        pending.length ? el("p", { class: "error", "data-testid": "sign-pending",
          text: `Confirm or dismiss every risk flag first (${pending.length} not reviewed).` }) : null,
        el("div", {}, attest, el("label", { for: "tbr-attest", style: "display:inline; margin-left: 6px",
          text: "I reviewed these notes; signing locks this version (later changes go in addenda)." })), button);
    }
    function addendaSection(r, signed) {
      const list = el("ol", { "data-testid": "addenda" }, ...(r.addenda || []).map((a) => el("li", { "data-testid": "addendum" },
        el("div", { class: "muted", text: `${a.author_name}, ${when(a.created_at)}` }), el("div", { text: a.text }))));
      if (!signed) return null;
      const text = el("textarea", { id: "tbr-addendum", "data-testid": "addendum-text", maxlength: "20000" });
      const form = el("form", { "data-testid": "addendum-form" }, el("label", { for: "tbr-addendum", text: "New addendum" }), text,
        el("button", { type: "submit", "data-testid": "addendum-submit", text: "Add addendum" }));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (!text.value.trim()) { fail("The addendum is empty."); return; }
        change("/notes/addenda", { text: text.value }, "Addendum added.");
      });
      return el("fieldset", {}, el("legend", { text: "Addenda" }),
        r.addenda && r.addenda.length ? list : el("p", { class: "muted", text: "No addenda yet." }), form);
    }

    // ---- versions ------------------------------------------------------------------------
    function changeText(v) {
      if (v.kind === "machine") return v.version === 1 ? "generated" : "regenerated";
      return (v.changes || []).map((c) => c.flag_id ? `risk flag ${c.flag_id}: ${c.detail}` : c.field).join(", ");
    }
    function versionsSection(r) {
      const detail = el("div", { "data-testid": "version-detail" });
      const items = r.versions.slice().reverse().map((v) => el("li", { "data-testid": "review-version", "data-version": String(v.version),
        "data-kind": v.kind },
        `Version ${v.version}${v.version === r.current_version ? " (current)" : ""} · ${v.kind.replace("_", " ")} · ` +
        `${v.author_name || "machine"} · ${when(v.created_at)} · ${changeText(v)} `,
        el("button", { type: "button", class: "small", "data-testid": "version-view", text: "View",
          "aria-label": `View version ${v.version}`, onclick: async () => {
            const result = await call(`/notes/versions/${v.version}`);
            if (!result.ok) { fail(reason(result)); return; }
            detail.replaceChildren(el("h4", { text: `Version ${v.version} as it was` }),
              el("pre", { "data-testid": "version-notes", text: JSON.stringify(result.data.notes, null, 2) }));
          } })));
      return el("fieldset", {}, el("legend", { text: `Versions (${r.versions.length})` }),
        el("ul", { class: "tbr-versions", "data-testid": "review-versions" }, ...items), detail);
    }

    // ---- copy for EHR --------------------------------------------------------------------
    function ehrSection() {
      const out = el("textarea", { id: "tbr-ehr", readonly: true, "data-testid": "ehr-text", rows: "10" });
      const label = el("label", { for: "tbr-ehr", text: "Text for the EHR (plain text)" });
      const wrap = el("div", { hidden: true }, label, out);
      const button = el("button", { type: "button", "data-testid": "copy-ehr", text: "Copy for EHR", onclick: async () => {
        const result = await call("/export/ehr");
        if (!result.ok) { fail(reason(result)); return; }
        out.value = result.data;
        wrap.hidden = false;
        try { await navigator.clipboard.writeText(result.data); say("Copied to the clipboard."); }
        catch (_) { out.focus(); out.select(); say("Select the text below and copy it."); }
      } });
      return el("fieldset", {}, el("legend", { text: "Copy for EHR" }), button, wrap);
    }

    function render() {
      const r = ui.review;
      const signed = r.status === "signed";
      body.replaceChildren(...[
        el("p", { class: "tbr-status", "data-testid": "review-status", "data-status": r.status,
          "data-version": String(r.current_version), text: statusLine(r) }),
        r.machine_update_pending ? el("p", { class: "muted", "data-testid": "machine-pending",
          text: "Regenerated notes arrived but were not applied: the notes were edited or signed since." }) : null,
        flagsSection(r, signed), signed ? null : editForm(r), signed ? null : signSection(r),
        addendaSection(r, signed), ehrSection(), versionsSection(r)].filter(Boolean));
    }

    load().catch(() => fail("Could not load the notes for review."));
    return { reload: load };
  }

  window.TBReview = { mount };
})();
