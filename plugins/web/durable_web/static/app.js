// The durable dashboard: plain JavaScript, no build step, no dependency. Pages are chosen by the
// URL's hash (#/, #/executions/ID, #/workers); live data arrives as server-sent events from
// /api/v1/events. Every value from the server is inserted as text, never as HTML.
"use strict";

const API = "/api/v1";
const STATUSES = ["ready", "running", "waiting_for_children", "waiting_for_finalize", "completed",
                  "failed", "timed_out", "finalize_failed", "cancelled"];
const FINISHED = new Set(["completed", "failed", "timed_out", "finalize_failed", "cancelled"]);
const COLORS = {ready: "#3b74e0", running: "#d49a00", waiting_for_children: "#e0b84a",
                waiting_for_finalize: "#c9a227", completed: "#1a9b48", failed: "#d1372b",
                timed_out: "#e0672b", finalize_failed: "#a8322a", cancelled: "#8a8f99"};

let stream = null;   // the EventSource of the current page
let timer = null;    // the polling timer of the workers page

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function statusBadge(status) {
  return el("span", {class: `status s-${status}`, "data-status": status}, status);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

async function api(path, options) {
  const response = await fetch(API + path, Object.assign({credentials: "same-origin"}, options));
  const body = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function live(query, handlers) {
  if (stream) stream.close();
  stream = new EventSource(`${API}/events?${new URLSearchParams(query)}`);
  const indicator = document.getElementById("live");
  stream.onopen = () => { indicator.textContent = "live"; indicator.className = "live on"; };
  stream.onerror = () => { indicator.textContent = "reconnecting…"; indicator.className = "live off"; };
  for (const [name, handle] of Object.entries(handlers)) {
    stream.addEventListener(name, (message) => handle(JSON.parse(message.data)));
  }
}

function stop() {
  if (stream) { stream.close(); stream = null; }
  if (timer) { clearInterval(timer); timer = null; }
}

function setMain(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

function notice(error) {
  return el("div", {class: "notice", role: "alert"}, error.message || String(error));
}

// ----------------------------------------------------------------------------- counts over time

function renderCounts(stats) {
  const box = document.getElementById("counts");
  if (!box) return;
  if (!stats.counts) {
    box.replaceChildren(el("p", {class: "muted"}, "This storage does not count executions by status."));
    return;
  }
  const chips = STATUSES.filter((s) => stats.counts[s]).map((s) =>
    el("span", {class: "count", "data-count": s}, statusBadge(s), el("b", {}, stats.counts[s].toLocaleString())));
  box.replaceChildren(el("div", {class: "counts"}, chips.length ? chips : el("span", {class: "muted"}, "no executions")),
                      chart(stats.history));
}

function chart(history) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 120");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "executions by status over time");
  if (history.length < 2) return el("p", {class: "legend"}, "Counts over time appear after a few samples.");
  const shown = STATUSES.filter((s) => history.some((h) => h.counts[s]));
  const top = Math.max(1, ...history.map((h) => Math.max(0, ...shown.map((s) => h.counts[s] || 0))));
  for (const status of shown) {
    const points = history.map((h, i) =>
      `${(i / (history.length - 1)) * 600},${115 - ((h.counts[status] || 0) / top) * 110}`).join(" ");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[status]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  }
  const first = history[0].at, last = history[history.length - 1].at;
  return el("div", {}, svg, el("div", {class: "legend"},
    `${when(first)} – ${when(last)}, highest ${top.toLocaleString()}: `,
    shown.map((s) => el("span", {style: `color:${COLORS[s]};margin-right:.6rem`}, `━ ${s}`))));
}

// ----------------------------------------------------------------------------- executions list

function executionsPage(params) {
  const status = params.get("status") || "";
  const task = params.get("task_id") || "";
  const cursor = params.get("cursor") || "";
  const select = el("select", {id: "filter-status", name: "status"},
    el("option", {value: ""}, "any"), STATUSES.map((s) => el("option", {value: s}, s)));
  select.value = status;
  const taskInput = el("input", {id: "filter-task", name: "task_id", value: task, placeholder: "task id"});
  const apply = (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (select.value) query.set("status", select.value);
    if (taskInput.value.trim()) query.set("task_id", taskInput.value.trim());
    location.hash = `#/?${query}`;
  };
  const form = el("form", {class: "filters", onsubmit: apply},
    el("label", {}, "Status", select), el("label", {}, "Task", taskInput),
    el("button", {type: "submit"}, "Filter"));
  select.addEventListener("change", apply);
  const table = el("div", {id: "executions"}, el("p", {class: "muted"}, "loading…"));
  setMain(el("h1", {}, "Executions"), el("section", {class: "card", id: "counts"}, "counts loading…"), form, table,
          el("div", {class: "pager", id: "pager"}));
  const filters = {};
  if (status) filters.status = status;
  if (task) filters.task_id = task;
  const show = (page) => renderExecutions(page, filters, cursor);
  api("/stats").then(renderCounts).catch(() => {});
  if (cursor) {  // a later page stays still; the first page is live
    api(`/executions?${new URLSearchParams({...filters, cursor})}`).then(show).catch((e) => table.replaceChildren(notice(e)));
    live({...filters, limit: 1}, {stats: renderCounts});
  } else {
    live(filters, {executions: show, stats: renderCounts});
  }
}

function renderExecutions(page, filters, cursor) {
  const box = document.getElementById("executions");
  if (!box) return;
  if (!page.executions.length) {
    box.replaceChildren(el("div", {class: "empty"}, "No executions match."));
  } else {
    const rows = page.executions.map((e) => el("tr", {"data-execution-id": e.execution_id},
      el("td", {class: "id"}, el("a", {href: `#/executions/${encodeURIComponent(e.execution_id)}`}, e.execution_id)),
      el("td", {}, e.task_id), el("td", {class: "status-cell"}, statusBadge(e.status)),
      el("td", {}, e.retry_attempts), el("td", {}, when(e.created_at)), el("td", {}, when(e.finished_at)),
      el("td", {class: "muted"}, e.parent ? e.parent.task_id : "")));
    box.replaceChildren(el("table", {}, el("thead", {}, el("tr", {},
      ["Execution", "Task", "Status", "Retries", "Created", "Finished", "Parent"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
  }
  const pager = document.getElementById("pager");
  const buttons = [];
  if (cursor) buttons.push(el("a", {href: `#/?${new URLSearchParams(filters)}`}, "← newest"));
  if (page.next_cursor) {
    buttons.push(el("a", {href: `#/?${new URLSearchParams({...filters, cursor: page.next_cursor})}`}, "older →"));
  }
  pager.replaceChildren(...buttons);
}

// ----------------------------------------------------------------------------- one execution

function executionPage(executionId) {
  setMain(el("p", {class: "muted"}, "loading…"));
  let treeLoaded = null;
  const show = (execution) => {
    renderExecution(execution);
    const key = `${execution.status}|${execution.children.length}|${execution.updated_at}`;
    if (treeLoaded !== key) {
      treeLoaded = key;
      api(`/executions/${encodeURIComponent(executionId)}/tree`).then((t) => renderTree(t, executionId)).catch(() => {});
    }
  };
  api(`/executions/${encodeURIComponent(executionId)}`).then((execution) => {
    show(execution);
    live({execution_id: executionId}, {execution: show});
  }).catch((e) => setMain(el("h1", {}, executionId), notice(e)));
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function renderExecution(e) {
  const cancel = el("button", {class: "danger", id: "cancel", type: "button", disabled: FINISHED.has(e.status) ? "" : null},
                    "Cancel");
  cancel.addEventListener("click", async () => {
    if (!confirm(`Cancel ${e.task_id} ${e.execution_id} and its unfinished descendants?`)) return;
    cancel.disabled = true;
    const path = `/executions/${encodeURIComponent(e.execution_id)}`;
    try {
      await api(`${path}/cancel`, {method: "POST"});
      renderExecution(await api(path));
    }
    catch (error) { document.getElementById("main").prepend(notice(error)); cancel.disabled = false; }
  });
  cancel.dataset.action = "cancel";
  const fields = [
    ["task", e.task_id], ["attempts", `${e.attempts} of at most ${e.max_attempts}`],
    ["created", when(e.created_at)], ["started", when(e.started_at)], ["finished", when(e.finished_at)],
    ["updated", when(e.updated_at)], ["worker", e.executor_id || "–"], ["timeout", `${e.timeout} s`],
  ];
  if (e.idempotency_key) fields.push(["idempotency key", e.idempotency_key]);
  if (e.sleeping_unique_id) fields.push(["sleeping unique id", e.sleeping_unique_id]);
  const relatives = [];
  if (e.parent) relatives.push(el("p", {}, "Parent: ", link(e.parent)));
  if (e.root && (!e.parent || e.root.execution_id !== e.parent.execution_id)) relatives.push(el("p", {}, "Root: ", link(e.root)));
  const sections = [
    el("h1", {}, `${e.task_id} `, el("span", {id: "status"}, statusBadge(e.status)), " ", cancel),
    el("p", {class: "muted id"}, e.execution_id),
    el("section", {class: "card"}, el("dl", {class: "fields"}, fields.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
       relatives),
    el("h2", {}, "Input"), el("pre", {id: "input"}, json(e.input)),
  ];
  if (e.status === "completed") sections.push(el("h2", {}, "Output"), el("pre", {id: "output"}, json(e.output)));
  if (e.error) {
    sections.push(el("h2", {}, "Error"), el("div", {class: "error-message", id: "error"},
      `${e.error.type_name || e.error.error_type}: ${e.error.message}`,
      e.error.is_retryable ? "" : el("span", {class: "muted"}, " (not retryable)")));
    if (e.error.traceback) sections.push(el("pre", {class: "traceback", id: "traceback"}, e.error.traceback));
  }
  sections.push(el("h2", {}, "Tree"), el("div", {id: "tree", class: "card"}, el("span", {class: "muted"}, "loading…")));
  const previousTree = document.getElementById("tree");
  setMain(...sections);
  if (previousTree) document.getElementById("tree").replaceWith(previousTree);
}

function link(ref) {
  return el("a", {href: `#/executions/${encodeURIComponent(ref.execution_id)}`}, `${ref.task_id} ${ref.execution_id}`);
}

function renderTree(answer, current) {
  const box = document.getElementById("tree");
  if (!box) return;
  const node = (n) => el("li", {class: n.execution_id === current ? "current" : null, "data-execution-id": n.execution_id},
    n.is_finalize ? el("span", {class: "muted"}, "finalize: ") : null, link(n), " ", statusBadge(n.status),
    n.children.length ? el("ul", {}, n.children.map(node)) : null);
  box.replaceChildren(el("ul", {class: "tree"}, node(answer.tree)),
    answer.truncated ? el("p", {class: "muted"}, "(truncated: the tree is larger)") : "");
}

// ----------------------------------------------------------------------------- workers

function workersPage() {
  setMain(el("h1", {}, "Workers"), el("div", {id: "workers"}, el("p", {class: "muted"}, "loading…")));
  const refresh = () => api("/workers").then(renderWorkers).catch((e) => {
    const box = document.getElementById("workers");
    if (box) box.replaceChildren(notice(e));
  });
  refresh();
  timer = setInterval(refresh, 3000);
  document.getElementById("live").textContent = "every 3 s";
  document.getElementById("live").className = "live";
}

function renderWorkers(answer) {
  const box = document.getElementById("workers");
  if (!box) return;
  if (!answer.workers.length) {
    box.replaceChildren(el("div", {class: "empty"}, "No live workers. Start one with: durable worker MODULE:EXECUTOR"));
    return;
  }
  box.replaceChildren(el("table", {}, el("thead", {}, el("tr", {},
    ["Worker", "Host", "PID", "Started", "Last heartbeat", "Running"].map((h) => el("th", {}, h)))),
    el("tbody", {}, answer.workers.map((w) => el("tr", {"data-worker-id": w.executor_id},
      el("td", {class: "id"}, w.executor_id), el("td", {}, w.host), el("td", {}, w.pid),
      el("td", {}, when(w.started_at)), el("td", {}, when(w.heartbeat_at)), el("td", {}, w.running))))));
}

// ----------------------------------------------------------------------------- routing

function route() {
  stop();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const page = path.startsWith("/workers") ? "workers" : "executions";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  const match = path.match(/^\/executions\/(.+)$/);
  if (match) executionPage(decodeURIComponent(match[1]));
  else if (page === "workers") workersPage();
  else executionsPage(new URLSearchParams(query || ""));
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", route);
