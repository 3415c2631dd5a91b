// fecluster sessions page: polls /api/cluster every 2 s, filters and sorts in the browser,
// kills through POST /api/sessions/{id}/kill (X-Requested-With: cross-site request protection).
"use strict";

const REFRESH_MS = 2000;
const state = { data: null, sortKey: "id", sortDir: 1, timer: null, busy: false };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child === null || child === undefined ? "" : child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && typeof body.data === "string" ? body.data : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body.data;
}

function showStatus(text, kind) {
  const box = $("#status");
  box.textContent = text;
  box.className = "banner " + (kind || "");
  box.hidden = !text;
}

function fillSelect(select, values) {
  const current = select.value;
  const wanted = ["", ...values];
  const have = Array.from(select.options).map((o) => o.value);
  if (wanted.join("\u0000") !== have.join("\u0000")) {
    select.replaceChildren(...wanted.map((v) => el("option", { value: v, textContent: v || "all" })));
  }
  select.value = wanted.includes(current) ? current : "";
  if (current && !wanted.includes(current)) {  // keep a chosen value that has no rows right now
    select.append(el("option", { value: current, textContent: current }));
    select.value = current;
  }
}

function distinct(rows, key) {
  return Array.from(new Set(rows.map((r) => String(r[key] ?? "")))).filter((v) => v !== "").sort();
}

function filtered(rows) {
  const user = $("#f-user").value, fe = $("#f-fe").value, command = $("#f-command").value, st = $("#f-state").value;
  const text = $("#f-text").value.trim().toLowerCase();
  return rows.filter((r) =>
    (!user || r.user === user) && (!fe || r.fe === fe) && (!command || r.command === command) &&
    (!st || r.state === st) &&
    (!text || [r.info, r.host, r.db, r.query_id, r.user, String(r.id)].some((v) => String(v ?? "").toLowerCase().includes(text))));
}

function sorted(rows) {
  const key = state.sortKey, dir = state.sortDir;
  return rows.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    const c = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
    return c * dir || (a.id - b.id);
  });
}

function renderSessions() {
  const data = state.data;
  if (!data) return;
  const rows = sorted(filtered(data.sessions));
  const body = $("#sessions tbody");
  body.replaceChildren(...rows.map((r) => {
    const actions = el("td", { class: "actions" });
    if (r.command === "Query") {
      actions.append(el("button", { class: "kill kill-query", type: "button", title: "KILL QUERY " + r.id,
        textContent: "Kill query", onclick: () => kill(r, "query") }));
    }
    actions.append(el("button", { class: "kill kill-connection", type: "button", title: "KILL CONNECTION " + r.id,
      textContent: "Kill connection", onclick: () => kill(r, "connection") }));
    return el("tr", { "data-id": String(r.id), "data-fe": r.fe, class: r.command === "Query" ? "running" : "" },
      el("td", { class: "num" }, String(r.id)), el("td", {}, r.user), el("td", {}, r.host), el("td", {}, r.fe),
      el("td", {}, r.db), el("td", {}, r.command), el("td", { class: "num" }, String(r.time)), el("td", {}, r.state),
      el("td", { class: "qid" }, r.query_id), el("td", { class: "info" }, r.info), actions);
  }));
  $("#count").textContent = `(${rows.length} shown of ${data.sessions.length})`;
  $("#empty").hidden = rows.length > 0;
  for (const th of document.querySelectorAll("#sessions th[data-key]")) {
    th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && state.sortDir > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDir < 0);
  }
}

function render() {
  const data = state.data;
  $("#whoami").textContent = `${data.user}${data.is_admin ? " (admin)" : ""} on FE ${data.fe}`;
  $("#updated").textContent = "updated " + data.time;
  const banner = $("#banner");
  if (data.failed_fes.length) {
    banner.replaceChildren(el("strong", {}, `${data.failed_fes.length} FE(s) did not answer; their sessions are missing: `),
      ...data.failed_fes.map((f) => el("div", { class: "failed-fe", "data-fe": f.fe }, f.message)));
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  $("#fes tbody").replaceChildren(...data.members.map((m) => el("tr", { "data-fe": m.address },
    el("td", {}, m.address + (m.this_fe ? " (this FE)" : "")), el("td", {}, m.mysql_address),
    el("td", {}, String(m.server_id)), el("td", {}, m.version), el("td", {}, m.started_at),
    el("td", {}, el("span", { class: "badge " + (m.status === "up" ? "up" : "down") }, m.status)))));
  $("#redis").textContent = data.redis_ok ? "Registry (Redis): reachable" : "Registry (Redis): unreachable, serving from cached membership";
  fillSelect($("#f-user"), distinct(data.sessions, "user"));
  fillSelect($("#f-fe"), Array.from(new Set([...distinct(data.sessions, "fe"), ...data.members.map((m) => m.address)])).sort());
  fillSelect($("#f-command"), distinct(data.sessions, "command"));
  fillSelect($("#f-state"), distinct(data.sessions, "state"));
  renderSessions();
}

async function refreshAudit() {
  if (!state.data || !state.data.is_admin) { $("#audit-section").hidden = true; return; }
  try {
    const entries = await api("/api/audit?limit=50");
    $("#audit tbody").replaceChildren(...entries.map((e) => el("tr", {},
      el("td", {}, e.time), el("td", {}, e.requester), el("td", {}, e.received_on), el("td", {}, e.kind),
      el("td", {}, e.target), el("td", {}, e.target_user || ""), el("td", {}, e.owner), el("td", {}, e.outcome))));
    $("#audit-section").hidden = false;
  } catch (e) {
    $("#audit-section").hidden = true;
  }
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    state.data = await api("/api/cluster");
    render();
    await refreshAudit();
  } catch (e) {
    showStatus("Could not load the cluster's sessions: " + e.message, "error");
  } finally {
    state.busy = false;
    schedule();
  }
}

function schedule() {
  clearTimeout(state.timer);
  if ($("#live").checked) state.timer = setTimeout(refresh, REFRESH_MS);
}

async function kill(row, kind) {
  const what = kind === "query" ? `KILL QUERY ${row.id}: stop the running statement of` : `KILL CONNECTION ${row.id}: close the connection of`;
  const statement = row.info ? `\n\n${row.info.slice(0, 200)}` : "";
  if (!window.confirm(`${what} ${row.user} on FE ${row.fe}?${statement}`)) return;
  try {
    const result = await api(`/api/sessions/${encodeURIComponent(row.id)}/kill?kind=${kind}`,
      { method: "POST", headers: { "X-Requested-With": "fecluster" } });
    showStatus(`Killed ${result.kind.toLowerCase()} ${result.connection_id} (owner FE ${result.owner_fe}).`, "ok");
  } catch (e) {
    showStatus(`Kill ${kind} ${row.id} failed: ${e.message}`, "error");
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("#sessions th[data-key]")) {
    th.addEventListener("click", () => {
      if (state.sortKey === th.dataset.key) state.sortDir = -state.sortDir;
      else { state.sortKey = th.dataset.key; state.sortDir = 1; }
      renderSessions();
    });
  }
  for (const id of ["#f-user", "#f-fe", "#f-command", "#f-state", "#f-text"]) $(id).addEventListener("input", renderSessions);
  $("#f-clear").addEventListener("click", () => { $("#filters").reset(); renderSessions(); });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#live").addEventListener("change", () => (($("#live").checked ? refresh() : clearTimeout(state.timer))));
  refresh();
});
