// TESP dashboard: a task list and a task page over the TES REST API of this origin.
//
// Task fields are user input. Everything a task carries reaches the page through
// textContent or text nodes only (see el() below); no string is ever parsed as HTML.
"use strict";

(function () {
  const API = "/ga4gh/tes/v1";
  const TOKEN_KEY = "tesp.dashboard.token";
  const FINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"]);
  const STATES = [
    "UNKNOWN", "QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "COMPLETE",
    "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "CANCELING", "PREEMPTED",
  ];
  const PAGE_SIZES = [10, 25, 50, 100];
  const DEFAULT_PAGE_SIZE = 25;
  const MAX_PAGE_SIZE = 2047;  // what GET /tasks accepts (1 to 2047)
  const LIST_REFRESH_MS = 5000;
  const TASK_REFRESH_MS = 2000;
  const TAIL_CHARS = 20000;

  let timer = null;          // the pending auto refresh, if any
  let generation = 0;        // bumps on each route change; stale responses are dropped
  let listSeq = 0;           // bumps on each list load; only the newest one renders
  let listHash = "#/";       // the list (with its filters and page) the task page goes back to

  // ---- DOM helpers: text only ---------------------------------------------------------

  // el("td", {className: "x"}, "text", childNode, ...): strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function view() {
    return document.getElementById("view");
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  // A milder note than an error: e.g. an address parameter the dashboard set aside.
  function showNotice(message) {
    const box = document.getElementById("notice");
    box.textContent = message || "";
    box.hidden = !message;
  }

  // Put the "Loading…" placeholder's place to a sentence saying nothing could be shown.
  function replaceLoading(holder, text) {
    const loading = holder.querySelector(".loading");
    if (loading) loading.replaceWith(el("p", { className: "muted load-failed" }, text));
  }

  // ---- API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, challenge) {
      super(message);
      this.status = status;
      this.challenge = challenge;
    }
  }

  function bearer() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  // Basic auth: the browser answers the server's challenge and resends its own
  // credentials (same origin). OIDC: the pasted bearer token, when there is one.
  async function api(path, options) {
    const headers = { Accept: "application/json" };
    const token = bearer();
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(API + path, {
      credentials: "same-origin",
      cache: "no-store",
      ...(options || {}),
      headers,
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const msg = body && body.msg ? body.msg : response.statusText;
      throw new ApiError(response.status, msg, response.headers.get("WWW-Authenticate") || "");
    }
    return body;
  }

  function reportFailure(err) {
    if (err instanceof ApiError && err.status === 401) {
      const scheme = err.challenge.split(" ")[0].toLowerCase();
      if (scheme === "bearer") {
        openAuth("This server wants a bearer token: paste one above.");
      }
      showError("Not signed in (401): " + err.message);
    } else if (err instanceof ApiError) {
      showError("The server answered " + err.status + ": " + err.message);
    } else {
      showError("The server cannot be reached: " + err.message);
    }
  }

  // ---- formatting ---------------------------------------------------------------------

  function fmtTime(value) {
    if (!value) return "";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }

  function fmtDuration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return "";
    if (ms < 10000) return (ms / 1000).toFixed(1) + " s";
    const s = Math.round(ms / 1000);
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  // Start and end of the task's last attempt, where its logs know them.
  function times(task) {
    const logs = task.logs || [];
    const last = logs.length ? logs[logs.length - 1] : {};
    const start = last.start_time || (last.logs && last.logs.length && last.logs[0].start_time);
    const end = FINAL.has(task.state) ? last.end_time || "" : "";
    let duration = "";
    if (start && end) duration = fmtDuration(Date.parse(end) - Date.parse(start));
    return { start: start || "", end, duration };
  }

  function stateBadge(state) {
    const name = state || "UNKNOWN";
    return el("span", { className: "state state-" + name.toLowerCase() }, name);
  }

  function taskLink(id, text) {
    return el("a", { href: "#/tasks/" + encodeURIComponent(id), className: "task-link" }, text);
  }

  // ---- routing ------------------------------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?");
    const params = new URLSearchParams(query || "");
    const match = path.match(/^\/tasks\/([^/]+)$/);
    if (match) return { page: "task", id: decodeURIComponent(match[1]), params };
    return { page: "list", params };
  }

  function route() {
    generation += 1;
    if (timer) clearTimeout(timer);
    timer = null;
    showError("");
    showNotice("");
    const where = parseHash();
    if (where.page === "task") renderTaskPage(where.id, generation);
    else renderListPage(where.params, generation);
  }

  function schedule(gen, ms, fn) {
    if (gen !== generation) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      if (gen === generation) fn();
    }, ms);
  }

  // ---- the task list ------------------------------------------------------------------

  // The filters and page of the address. A value the API would refuse (or the select could
  // not show) is set aside with a notice, so the request, the form and the address agree.
  function filtersFrom(params) {
    const problems = [];
    const rawState = params.get("state") || "";
    const state = STATES.includes(rawState) ? rawState : "";
    if (rawState && !state) problems.push("state " + JSON.stringify(rawState) + " is not a TES state");
    const rawSize = params.get("page_size");
    let size = DEFAULT_PAGE_SIZE;
    if (rawSize !== null) {
      const n = /^[0-9]{1,4}$/.test(rawSize) ? parseInt(rawSize, 10) : NaN;
      if (n >= 1 && n <= MAX_PAGE_SIZE) size = n;
      else problems.push("page_size " + JSON.stringify(rawSize) + " is not 1 to " + MAX_PAGE_SIZE);
    }
    const filters = {
      state,
      name_prefix: params.get("name_prefix") || "",
      tag_key: params.get("tag_key") || "",
      tag_value: params.get("tag_value") || "",
      page_size: size,
      refresh: params.get("refresh") !== "off",
      // The page shown, and the tokens of the pages before it (the first page's is "").
      token: params.get("page_token") || "",
      stack: params.getAll("prev"),
    };
    if (!filters.token) filters.stack = [];
    return { filters, problems };
  }

  // The address of a list: its filters, and its page unless paging starts over.
  function filterHash(filters, page) {
    const params = new URLSearchParams();
    for (const key of ["state", "name_prefix", "tag_key", "tag_value"]) {
      if (filters[key]) params.set(key, filters[key]);
    }
    params.set("page_size", String(filters.page_size));
    if (!filters.refresh) params.set("refresh", "off");
    if (page && page.token) {
      params.set("page_token", page.token);
      for (const token of page.stack) params.append("prev", token);
    }
    return "#/?" + params.toString();
  }

  function select(id, label, options, current) {
    const node = el("select", { id, name: id });
    for (const [value, text] of options) {
      node.append(el("option", { value, selected: value === current }, text));
    }
    return el("label", { className: "field" }, label, node);
  }

  function input(id, label, value, placeholder) {
    const node = el("input", { id, name: id, value, placeholder, type: "text", spellcheck: false });
    return el("label", { className: "field" }, label, node);
  }

  // The usual sizes, plus the one of the address when it is another the API accepts.
  function sizeChoices(current) {
    return PAGE_SIZES.includes(current) ? PAGE_SIZES
      : [...PAGE_SIZES, current].sort((a, b) => a - b);
  }

  function filterForm(filters) {
    const form = el(
      "form",
      { id: "filters", className: "filters", autocomplete: "off" },
      select("f-state", "State", [["", "any"], ...STATES.map((s) => [s, s])], filters.state),
      input("f-name", "Name prefix", filters.name_prefix, "e.g. align-"),
      input("f-tag-key", "Tag key", filters.tag_key, "key"),
      input("f-tag-value", "Tag value", filters.tag_value, "value (optional)"),
      select("f-size", "Per page", sizeChoices(filters.page_size).map((n) => [String(n), String(n)]),
        String(filters.page_size)),
      el("label", { className: "field check" },
        el("input", { id: "f-refresh", type: "checkbox", checked: filters.refresh }),
        "Auto refresh"),
      el("button", { type: "submit", id: "f-apply" }, "Apply"),
    );
    const read = () => ({
      state: form.querySelector("#f-state").value,
      name_prefix: form.querySelector("#f-name").value,
      tag_key: form.querySelector("#f-tag-key").value,
      tag_value: form.querySelector("#f-tag-value").value,
      page_size: parseInt(form.querySelector("#f-size").value, 10),
      refresh: form.querySelector("#f-refresh").checked,
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = filterHash(read());
    });
    for (const id of ["#f-state", "#f-size", "#f-refresh"]) {
      form.querySelector(id).addEventListener("change", () => {
        location.hash = filterHash(read());
      });
    }
    return form;
  }

  function listQuery(filters, token) {
    const params = new URLSearchParams({ view: "BASIC", page_size: String(filters.page_size) });
    if (filters.state) params.set("state", filters.state);
    if (filters.name_prefix) params.set("name_prefix", filters.name_prefix);
    if (filters.tag_key) {
      params.append("tag_key", filters.tag_key);
      if (filters.tag_value) params.append("tag_value", filters.tag_value);
    }
    if (token) params.set("page_token", token);
    return "/tasks?" + params.toString();
  }

  function taskRow(task) {
    const t = times(task);
    const tags = Object.entries(task.tags || {}).map(([k, v]) =>
      el("span", { className: "tag" }, v ? k + "=" + v : k));
    return el(
      "tr",
      { dataset: { taskId: task.id, state: task.state || "" } },
      el("td", { className: "col-state" }, stateBadge(task.state)),
      el("td", { className: "col-name" }, taskLink(task.id, task.name || "(no name)")),
      el("td", { className: "col-id" }, taskLink(task.id, task.id)),
      el("td", { className: "col-created" }, fmtTime(task.creation_time)),
      el("td", { className: "col-ended" }, fmtTime(t.end)),
      el("td", { className: "col-duration" }, t.duration),
      el("td", { className: "col-tags" }, tags),
    );
  }

  // Previous and Next move through the address, so a reload or a bookmark keeps the page.
  function pager(filters, nextToken, count) {
    const prev = el("button", { type: "button", id: "page-prev", disabled: !filters.token },
      "\u2190 Previous");
    const next = el("button", { type: "button", id: "page-next", disabled: !nextToken },
      "Next \u2192");
    prev.addEventListener("click", () => {
      prev.disabled = next.disabled = true;
      const stack = filters.stack.slice(0, -1);
      const token = filters.stack.length ? filters.stack[filters.stack.length - 1] : "";
      location.hash = filterHash(filters, { token, stack });
    });
    next.addEventListener("click", () => {
      prev.disabled = next.disabled = true;
      location.hash = filterHash(filters, { token: nextToken, stack: [...filters.stack, filters.token] });
    });
    const number = filters.token ? filters.stack.length + 1 : 1;
    const info = el("span", { id: "page-info", className: "muted" },
      "Page " + number + " \u00b7 " + count + " task" + (count === 1 ? "" : "s"));
    return el("nav", { className: "pager" }, prev, info, next);
  }

  function renderListPage(params, gen) {
    const { filters, problems } = filtersFrom(params);
    if (problems.length) {
      showNotice("Ignored in the address: " + problems.join("; ") + ".");
      // The address says what is shown: the ignored values leave it (no new history entry).
      history.replaceState(null, "", filterHash(filters, filters));
    }
    listHash = location.hash || "#/";
    clear(view()).append(
      el("h1", {}, "Tasks"),
      filterForm(filters),
      el("div", { id: "task-list" }, el("p", { className: "muted loading" }, "Loading\u2026")),
    );
    loadList(filters, gen);
  }

  async function loadList(filters, gen) {
    const seq = ++listSeq;
    let body;
    try {
      body = await api(listQuery(filters, filters.token));
    } catch (err) {
      if (gen !== generation || seq !== listSeq) return;
      reportFailure(err);
      replaceLoading(document.getElementById("task-list"), "The tasks could not be loaded.");
      if (filters.refresh) schedule(gen, LIST_REFRESH_MS, () => loadList(filters, gen));
      return;
    }
    if (gen !== generation || seq !== listSeq) return;
    showError("");
    const tasks = body.tasks || [];
    const head = el("tr", {}, ["State", "Name", "ID", "Created", "Ended", "Duration", "Tags"]
      .map((h) => el("th", { scope: "col" }, h)));
    const table = el("table", { className: "tasks", id: "tasks" },
      el("thead", {}, head), el("tbody", {}, tasks.map(taskRow)));
    const holder = clear(document.getElementById("task-list"));
    holder.append(tasks.length ? table : el("p", { className: "muted", id: "no-tasks" },
      "No tasks match."), pager(filters, body.next_page_token || "", tasks.length));
    holder.dataset.loadedAt = String(Date.now());
    if (filters.refresh) schedule(gen, LIST_REFRESH_MS, () => loadList(filters, gen));
  }

  // ---- the task page ------------------------------------------------------------------

  function section(title, id, ...content) {
    return el("section", { className: "card", id }, el("h2", {}, title), content);
  }

  function kvTable(rows, className) {
    const body = rows
      .filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k),
        el("td", {}, v instanceof Node ? v : String(v))));
    return body.length ? el("table", { className: "kv " + (className || "") }, el("tbody", {}, body))
      : el("p", { className: "muted" }, "None.");
  }

  function tail(text, id) {
    const value = text || "";
    const shown = value.length > TAIL_CHARS ? value.slice(-TAIL_CHARS) : value;
    const note = value.length > TAIL_CHARS
      ? el("p", { className: "muted" }, "Last " + TAIL_CHARS + " of " + value.length + " characters.")
      : null;
    // "(empty)" comes from the style sheet, so the element's text stays the real output.
    return [note, el("pre", { className: shown ? "log" : "log empty", id }, shown)];
  }

  function argv(command) {
    return el("ol", { className: "argv" },
      (command || []).map((arg) => el("li", {}, el("code", {}, arg))));
  }

  function executorCard(executor, index) {
    const env = Object.entries(executor.env || {}).map(([k, v]) => k + "=" + v).join("\n");
    return el("div", { className: "executor", dataset: { index: String(index) } },
      el("h3", {}, "Executor " + index),
      kvTable([
        ["Image", executor.image],
        ["Command", argv(executor.command)],
        ["Workdir", executor.workdir],
        ["Stdin", executor.stdin],
        ["Stdout", executor.stdout],
        ["Stderr", executor.stderr],
        ["Environment", env ? el("pre", { className: "env" }, env) : ""],
        ["Ignore error", executor.ignore_error ? "yes" : ""],
      ]));
  }

  function executorLogCard(log, attempt, index) {
    const prefix = "log-" + attempt + "-" + index;
    const dur = log.start_time && log.end_time
      ? fmtDuration(Date.parse(log.end_time) - Date.parse(log.start_time)) : "";
    return el("div", { className: "executor-log", id: prefix },
      el("h3", {}, "Executor " + index),
      kvTable([
        ["Exit code", el("span", { className: "exit-code" }, String(log.exit_code))],
        ["Started", fmtTime(log.start_time)],
        ["Ended", fmtTime(log.end_time)],
        ["Duration", dur],
      ]),
      el("h4", {}, "stdout"), tail(log.stdout, prefix + "-stdout"),
      el("h4", {}, "stderr"), tail(log.stderr, prefix + "-stderr"));
  }

  function filesTable(items, columns, id) {
    if (!items || !items.length) return el("p", { className: "muted" }, "None.");
    return el("table", { className: "files", id },
      el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", { scope: "col" }, title)))),
      el("tbody", {}, items.map((item) => el("tr", {}, columns.map(([, get]) =>
        el("td", {}, get(item) === undefined || get(item) === null ? "" : String(get(item))))))));
  }

  function short(text) {
    if (text === undefined || text === null) return "";
    return text.length > 200 ? text.slice(0, 200) + "\u2026" : text;
  }

  function attemptSections(task) {
    const logs = task.logs || [];
    if (!logs.length) return [section("Logs", "logs", el("p", { className: "muted" }, "No logs yet."))];
    return logs.map((log, attempt) => {
      const label = logs.length > 1 ? " (attempt " + (attempt + 1) + ")" : "";
      return section("Logs" + label, "logs-" + attempt,
        kvTable([["Started", fmtTime(log.start_time)], ["Ended", fmtTime(log.end_time)]]),
        (log.logs || []).map((l, i) => executorLogCard(l, attempt, i)),
        el("h3", {}, "Output files"),
        filesTable(log.outputs, [["Path", (o) => o.path], ["URL", (o) => o.url],
          ["Size (bytes)", (o) => o.size_bytes]], "output-logs-" + attempt),
        el("h3", {}, "System logs"),
        log.system_logs && log.system_logs.length
          ? el("pre", { className: "log system-log" }, log.system_logs.join("\n"))
          : el("p", { className: "muted" }, "None."),
        log.metadata ? [el("h3", {}, "Metadata"),
          kvTable(Object.entries(log.metadata))] : null);
    });
  }

  function cancelButton(task, gen) {
    if (FINAL.has(task.state) || task.state === "CANCELING") return null;
    const button = el("button", { type: "button", id: "cancel", className: "danger" }, "Cancel task");
    button.addEventListener("click", async () => {
      if (!window.confirm("Cancel task " + task.id + "?")) return;
      button.disabled = true;
      try {
        await api("/tasks/" + encodeURIComponent(task.id) + ":cancel", { method: "POST" });
      } catch (err) {
        reportFailure(err);
      }
      loadTask(task.id, gen);
    });
    return button;
  }

  function taskPage(task, gen) {
    const t = times(task);
    const r = task.resources || {};
    const params = Object.entries(r.backend_parameters || {}).map(([k, v]) => k + "=" + v);
    return [
      el("p", {}, el("a", { href: listHash, id: "back" }, "\u2190 Tasks")),
      el("h1", { id: "task-name" }, task.name || "(no name)"),
      el("div", { className: "task-head" }, stateBadge(task.state),
        el("code", { id: "task-id" }, task.id), cancelButton(task, gen),
        FINAL.has(task.state) ? null : el("span", { className: "muted" }, "refreshing\u2026")),
      section("Overview", "overview", kvTable([
        ["Description", task.description],
        ["Created", fmtTime(task.creation_time)],
        ["Started", fmtTime(t.start)],
        ["Ended", fmtTime(t.end)],
        ["Duration", t.duration],
        ["Volumes", (task.volumes || []).join(", ")],
      ])),
      section("Tags", "tags", kvTable(Object.entries(task.tags || {}), "tags")),
      section("Resources", "resources", kvTable([
        ["CPU cores", r.cpu_cores],
        ["RAM (GB)", r.ram_gb],
        ["Disk (GB)", r.disk_gb],
        ["Preemptible", r.preemptible === undefined ? "" : String(r.preemptible)],
        ["Zones", (r.zones || []).join(", ")],
        ["Backend parameters", params.join(", ")],
      ])),
      section("Executors", "executors", (task.executors || []).map(executorCard)),
      section("Inputs", "inputs", filesTable(task.inputs, [["Name", (i) => i.name],
        ["Path", (i) => i.path], ["URL", (i) => i.url], ["Type", (i) => i.type],
        ["Content", (i) => short(i.content)]], "inputs-table")),
      section("Outputs", "outputs", filesTable(task.outputs, [["Name", (o) => o.name],
        ["Path", (o) => o.path], ["URL", (o) => o.url], ["Type", (o) => o.type],
        ["Path prefix", (o) => o.path_prefix]], "outputs-table")),
      ...attemptSections(task),
    ];
  }

  function renderTaskPage(id, gen) {
    clear(view()).append(el("p", { className: "muted loading" }, "Loading task\u2026"));
    loadTask(id, gen);
  }

  async function loadTask(id, gen) {
    let task;
    try {
      task = await api("/tasks/" + encodeURIComponent(id) + "?view=FULL");
    } catch (err) {
      if (gen !== generation) return;
      reportFailure(err);
      if (view().querySelector(".loading")) {
        // Nothing of the task was shown yet: say so, and offer the way back.
        clear(view()).append(
          el("p", {}, el("a", { href: listHash, id: "back" }, "\u2190 Tasks")),
          el("p", { className: "muted load-failed" }, "This task could not be loaded."));
      }
      if (!(err instanceof ApiError && err.status === 404)) {
        schedule(gen, TASK_REFRESH_MS, () => loadTask(id, gen));
      }
      return;
    }
    if (gen !== generation) return;
    showError("");
    const root = clear(view());
    root.append(...taskPage(task, gen).filter(Boolean));
    root.dataset.state = task.state || "";
    document.title = "TESP \u00b7 " + (task.name || task.id);
    if (!FINAL.has(task.state)) schedule(gen, TASK_REFRESH_MS, () => loadTask(id, gen));
  }

  // ---- auth panel ---------------------------------------------------------------------

  // The token button only where a token can matter: the server asked for one, or one is set.
  function showAuthToggle() {
    document.getElementById("auth-toggle").hidden = false;
  }

  function openAuth(message) {
    showAuthToggle();
    document.getElementById("auth").hidden = false;
    if (message) document.getElementById("auth-status").textContent = message;
  }

  function setupAuth() {
    const panel = document.getElementById("auth");
    const field = document.getElementById("auth-token");
    const status = document.getElementById("auth-status");
    const describe = () => {
      status.textContent = bearer() ? "A token is set for this tab." : "No token set.";
    };
    if (bearer()) showAuthToggle();
    document.getElementById("auth-toggle").addEventListener("click", () => {
      panel.hidden = !panel.hidden;
      describe();
    });
    document.getElementById("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = field.value.trim().replace(/^bearer\s+/i, "");
      try {
        if (value) sessionStorage.setItem(TOKEN_KEY, value);
      } catch (_) {
        status.textContent = "This browser refuses session storage.";
        return;
      }
      field.value = "";
      describe();
      route();
    });
    document.getElementById("auth-clear").addEventListener("click", () => {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) { /* nothing stored */ }
      describe();
      route();
    });
  }

  async function loadServiceInfo() {
    try {
      const info = await api("/service-info");
      const parts = [info.name, info.version].filter(Boolean).join(" ");
      document.getElementById("service").textContent = parts;
    } catch (_) {
      // The page works without it; errors of the task calls are what the user needs.
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupAuth();
    loadServiceInfo();
    window.addEventListener("hashchange", route);
    route();
  });
})();
