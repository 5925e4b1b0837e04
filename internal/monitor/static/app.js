// drove monitor: reads /api/status, then follows /api/events (server-sent
// events), so the page stays live without reloading. Everything the API
// says is put into the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { offset: 0, limit: 50, status: "", csrf: "", actions: [], es: null, last: null, openJob: 0 };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}
function pct(n) { return n === undefined || n === null ? "–" : n.toFixed(0) + " %"; }
function secs(s) {
  if (!s) return "0 s";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function when(t) {
  if (!t) return "–";
  const d = new Date(t);
  return isNaN(d) ? "–" : d.toLocaleTimeString();
}
function can(a) { return state.actions.includes(a); }

function query() {
  const q = new URLSearchParams({ offset: state.offset, limit: state.limit });
  if (state.status) q.set("status", state.status);
  return q.toString();
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.message) || r.status + " " + r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

async function act(a) {
  $("action-error").hidden = true;
  try {
    await api("api/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Drove-CSRF": state.csrf },
      body: JSON.stringify(a),
    });
  } catch (e) {
    $("action-error").textContent = e.message;
    $("action-error").hidden = false;
    if (e.status === 401) showLogin(e.message);
  }
}

function showLogin(why) {
  stopEvents();
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-why").textContent = why || "";
  $("conn").textContent = "signed out";
  $("conn").className = "conn down";
}

function render(st) {
  state.last = st;
  state.csrf = st.csrf || "";
  state.actions = st.actions || [];
  const ro = state.actions.length === 0;
  document.body.classList.toggle("readonly", ro);
  $("readonly").hidden = !ro;
  $("login").hidden = true;
  $("main").hidden = false;
  $("title").textContent = st.name || "drove";
  $("kind").textContent = st.kind;
  document.title = "drove " + st.kind + " " + (st.name || "");
  $("add-node").hidden = !can("add_node");

  let cpus = 0, done = 0;
  const nb = $("nodes").tBodies[0];
  nb.replaceChildren();
  for (const n of st.nodes) {
    cpus += n.cpus;
    done += n.jobs_done;
    const tr = el("tr", null, n.state);
    tr.dataset.node = n.name;
    tr.append(el("td", n.name), el("td", n.address || ""), el("td", n.state + (n.allocated ? "" : " (deallocated)"), "state"),
      el("td", n.cpus, "num cpus"), el("td", n.busy, "num busy"), el("td", n.jobs_done, "num done"),
      el("td", n.jobs_done ? (n.node_time / n.jobs_done).toFixed(2) : "–", "num"), el("td", secs(n.node_time), "num"),
      el("td", pct(n.cpu_free), "num"), el("td", bytes(n.mem_free), "num"), el("td", bytes(n.disk_free), "num"), el("td", pct(n.swap_used), "num"));
    const td = el("td", null, "act");
    if (can("set_cpus")) {
      const inp = el("input", null, "cpus");
      inp.type = "number"; inp.min = "0"; inp.value = n.cpus; inp.title = "CPUs";
      const b = el("button", "set CPUs", "set-cpus");
      b.type = "button";
      b.onclick = () => act({ action: "set_cpus", node: n.name, cpus: parseInt(inp.value, 10) });
      td.append(inp, b);
    }
    if (n.allocated && can("deallocate")) {
      const b = el("button", "deallocate"); b.type = "button";
      b.onclick = () => act({ action: "deallocate", node: n.name });
      td.append(b);
    }
    if (!n.allocated && n.state === "up" && can("allocate")) {
      const b = el("button", "allocate"); b.type = "button";
      b.onclick = () => act({ action: "allocate", node: n.name });
      td.append(b);
    }
    if (n.state === "up" && can("close")) {
      const b = el("button", "close"); b.type = "button";
      b.onclick = () => { if (confirm("Close node " + n.name + "? Its running jobs go on elsewhere.")) act({ action: "close", node: n.name }); };
      td.append(b);
    }
    tr.append(td);
    nb.append(tr);
  }
  $("sum-nodes").textContent = st.nodes.filter((n) => n.state === "up").length;
  $("sum-cpus").textContent = cpus;
  $("sum-pending").textContent = st.pending;
  $("sum-running").textContent = st.running;
  $("sum-done").textContent = done;
  $("sum-uptime").textContent = st.begin ? secs((new Date(st.time) - new Date(st.begin)) / 1000) : "–";

  $("comps-title").textContent = st.kind === "client" ? "Computation" : "Computations";
  const cb = $("comps").tBodies[0];
  cb.replaceChildren();
  for (const c of st.computations) {
    const tr = el("tr");
    tr.dataset.comp = c.id;
    tr.append(el("td", c.id || "(this cluster)"), el("td", c.client || ""), el("td", c.what || ""),
      el("td", c.pending, "num pending"), el("td", c.running, "num running"), el("td", c.finished, "num finished"),
      el("td", c.cancelled, "num cancelled"), el("td", c.terminated, "num terminated"), el("td", c.abandoned, "num abandoned"),
      el("td", secs(c.slot_time), "num"));
    cb.append(tr);
  }
  if (st.computations.length === 0) {
    const td = el("td", st.kind === "client" ? "no jobs yet" : "no computations open", "muted");
    td.colSpan = 10;
    const tr = el("tr"); tr.append(td); cb.append(tr);
  }

  document.body.classList.toggle("commands", st.jobs.some((j) => j.command));
  $("jobs-count").textContent = "(" + st.jobs_total + " kept of " + st.jobs_seen + " seen)";
  $("page").textContent = st.jobs_total === 0 ? "" : (state.offset + 1) + "–" + (state.offset + st.jobs.length) + " of " + st.jobs_total;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + st.jobs.length >= st.jobs_total;
  const jb = $("jobs").tBodies[0];
  jb.replaceChildren();
  for (const j of st.jobs) {
    const tr = el("tr", null, "s-" + j.status);
    tr.dataset.id = j.id;
    tr.dataset.jobId = j.job_id;
    tr.dataset.status = j.status;
    const a = el("a", j.id, "job");
    a.onclick = () => openJob(j.id);
    const idc = el("td"); idc.append(a);
    tr.append(idc, el("td", j.job_id, "num"), el("td", j.computation || ""), el("td", j.command || "", "cmd cmdline"), el("td", j.status, "status"),
      el("td", j.exit_code === undefined ? "" : j.exit_code, "cmd num"), el("td", j.node || ""),
      el("td", when(j.start)), el("td", secs(j.run_time), "num"));
    const td = el("td", null, "act");
    if ((j.status === "running" || j.status === "pending") && can("cancel")) {
      const b = el("button", "cancel", "cancel"); b.type = "button";
      b.dataset.job = j.id;
      b.onclick = () => act({ action: "cancel", job: j.id });
      td.append(b);
    }
    tr.append(td);
    jb.append(tr);
  }
  if (state.openJob) refreshJob();
}

async function openJob(id) {
  state.openJob = id;
  await refreshJob();
}

async function refreshJob() {
  const id = state.openJob;
  try {
    const j = await api("api/jobs/" + id);
    if (state.openJob !== id) return;
    $("job").hidden = false;
    $("job-title").textContent = j.id + " (job " + j.job_id + (j.computation ? " of " + j.computation : "") + ")";
    $("job-status").textContent = j.status + (j.run_time ? ", " + secs(j.run_time) : "");
    $("job-node").textContent = j.node || "–";
    $("job-command").textContent = j.command ? j.command + (j.exit_code === undefined ? "" : " (exit " + j.exit_code + ")") : "";
    $("job-error").textContent = j.error || "–";
    $("job-stdout").textContent = j.stdout || "";
    $("job-stderr").textContent = j.stderr || "";
  } catch (e) {
    $("job").hidden = false;
    $("job-error").textContent = e.message;
  }
}

function stopEvents() {
  if (state.es) { state.es.close(); state.es = null; }
}

// follow opens the event stream for the current page of jobs; the browser
// reconnects by itself after a network error.
function follow() {
  stopEvents();
  const es = new EventSource("api/events?" + query());
  state.es = es;
  es.addEventListener("status", (ev) => {
    $("conn").textContent = "live";
    $("conn").className = "conn live";
    render(JSON.parse(ev.data));
  });
  es.onerror = async () => {
    $("conn").textContent = "reconnecting…";
    $("conn").className = "conn down";
    // An EventSource does not say why; ask the API, which does.
    try { await api("api/status?" + query()); } catch (e) {
      if (e.status === 401 || e.status === 403) showLogin(e.message);
    }
  };
}

async function start() {
  try {
    render(await api("api/status?" + query()));
    follow();
  } catch (e) {
    if (e.status === 401 || e.status === 403) { showLogin(e.message); return; }
    $("conn").textContent = e.message;
    $("conn").className = "conn down";
    setTimeout(start, 2000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").hidden = true;
    try {
      await api("login", { method: "POST", body: new URLSearchParams({ secret: $("secret").value }) });
      $("secret").value = "";
      $("logout-form").hidden = false;
      start();
    } catch (e) {
      $("login-error").textContent = e.message;
      $("login-error").hidden = false;
    }
  };
  $("logout-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try { await api("logout", { method: "POST" }); } catch (e) { /* signed out anyway */ }
    showLogin("Signed out.");
  };
  $("add-node").onsubmit = (ev) => {
    ev.preventDefault();
    for (const a of $("add-address").value.split(/[\s,]+/).filter(Boolean)) act({ action: "add_node", address: a });
    $("add-address").value = "";
  };
  $("filter").onchange = () => { state.status = $("filter").value; state.offset = 0; start(); };
  $("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); start(); };
  $("next").onclick = () => { state.offset += state.limit; start(); };
  $("job-close").onclick = () => { state.openJob = 0; $("job").hidden = true; };
  start();
});
