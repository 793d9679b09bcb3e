// The alarm queue, live: the server's event stream says when the alarms in the caller's scope
// changed, and the queue is read again from /v1/alarms with the chosen filters. Filters
// (severity, state, model, customer, region) and the sort column are kept in the address, so a
// filtered, sorted queue can be bookmarked. Alarms that arrived while the page was open are
// marked new. Sorting is of the rows read (the newest 200 that match the filters).

import { api, fetched, h, t, when } from "./api.js";

const SEVERITIES = ["critical", "major", "minor", "info"];
const STATES = ["open", "cleared"];
const FREE = ["model", "customer_id", "region", "machine_id"];
const RANK = { critical: 0, major: 1, minor: 2, info: 3 };

// Column key -> [heading key, value to sort by, staff only].
const COLUMNS = [
  ["severity", "col.severity", (a) => RANK[a.severity] ?? 9, false],
  ["raised", "col.raised", (a) => a.raised_at, false],
  ["fault", "col.fault", (a) => a.title, false],
  ["machine", "col.machine", (a) => a.machine_id, false],
  ["model", "col.model", (a) => a.model, false],
  ["customer", "col.customer", (a) => a.customer_id, true],
  ["region", "queue.region", (a) => a.region || "", true],
  ["state", "col.state", (a) => a.state, false],
  ["ack", "col.ack", (a) => (a.acknowledged_at ? 1 : 0), false],
];

function fromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = {
    severity: SEVERITIES.includes(query.get("severity")) ? query.get("severity") : "",
    state: STATES.includes(query.get("state")) ? query.get("state") : "",
  };
  for (const key of FREE) filters[key] = (query.get(key) || "").slice(0, 100);
  const sort = COLUMNS.some(([key]) => key === query.get("sort")) ? query.get("sort") : "raised";
  const dir = query.get("dir") === "asc" ? "asc" : "desc";
  return { filters, sort, dir };
}

function choice(id, label, values, text, chosen, onchange) {
  // Fixed lists keep their order; values seen in the queue are sorted.
  const options = [...new Set([...values, ...(chosen ? [chosen] : [])])];
  if (values instanceof Set) options.sort();
  const select = h("select", { id, onchange },
    h("option", { value: "" }, t("filter.any")),
    options.map((v) => h("option", { value: v, selected: v === chosen }, text(v))));
  return h("label", { for: id }, label, " ", select);
}

export function showQueue(root, shell) {
  const view = fromAddress();
  const { filters } = view;
  const staff = shell.me().role !== "customer";
  const columns = COLUMNS.filter(([, , , staffOnly]) => staff || !staffOnly);
  const seen = { model: new Set(), customer_id: new Set(), region: new Set() };
  const live = h("span", { class: "live off", role: "status" }, t("live.off"));
  const head = h("tr");
  const body = h("tbody");
  const note = h("div");
  const filterBar = h("div", { class: "filters" });
  let newestSeen = null;
  let stopped = false;
  let alarms = [];

  const readdress = (reload = true) => {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    if (view.sort !== "raised" || view.dir !== "desc") { query.set("sort", view.sort); query.set("dir", view.dir); }
    const text = query.toString();
    history.replaceState(null, "", `#/alarms${text ? `?${text}` : ""}`);
    if (reload) load(); else draw();
  };
  const set = (key) => (e) => { filters[key] = e.target.value; readdress(); };

  function drawFilters() {
    const bar = [
      choice("severity", t("filter.severity"), SEVERITIES, (v) => t(`severity.${v}`), filters.severity, set("severity")),
      choice("state", t("filter.state"), STATES, (v) => t(`state.${v}`), filters.state, set("state")),
      choice("model", t("queue.filter_model"), seen.model, (v) => v, filters.model, set("model")),
    ];
    if (staff) {
      bar.push(choice("customer", t("queue.filter_customer"), seen.customer_id, (v) => v, filters.customer_id, set("customer_id")),
        choice("region", t("queue.filter_region"), seen.region, (v) => v, filters.region, set("region")));
    }
    if (filters.machine_id) {
      bar.push(h("span", { class: "chip" }, t("queue.machine_only", { machine: filters.machine_id }), " ",
        h("button", { type: "button", onclick: () => { filters.machine_id = ""; readdress(); } }, t("queue.show_all"))));
    }
    filterBar.replaceChildren(...bar);
  }

  function drawHead() {
    head.replaceChildren(...columns.map(([key, label]) => {
      const sorted = view.sort === key;
      const arrow = sorted ? (view.dir === "asc" ? " ▲" : " ▼") : "";
      return h("th", { scope: "col", "aria-sort": sorted ? (view.dir === "asc" ? "ascending" : "descending") : "none" },
        h("button", { type: "button", class: "sort", onclick: () => {
          view.dir = sorted && view.dir === "desc" ? "asc" : (sorted ? "desc" : (key === "raised" ? "desc" : "asc"));
          view.sort = key;
          readdress(false);
        } }, t(label), arrow));
    }));
  }

  function cell(key, a, fresh) {
    switch (key) {
      case "severity": return h("td", {}, h("span", { class: `badge sev-${a.severity}` }, t(`severity.${a.severity}`)),
        fresh ? h("span", { class: "badge new" }, t("queue.new")) : null);
      case "raised": return h("td", {}, when(a.raised_at));
      case "fault": return h("td", {}, h("a", { href: `#/alarms/${a.alarm_id}` }, a.title));
      case "machine": return h("td", {}, a.machine_id);
      case "model": return h("td", {}, a.model);
      case "customer": return h("td", {}, a.customer_id);
      case "region": return h("td", {}, a.region || "—");
      case "state": return h("td", {}, t(`state.${a.state}`));
      default: return h("td", {}, a.acknowledged_at ? t("yes") : t("no"));
    }
  }

  function draw() {
    drawHead();
    const [, , by] = COLUMNS.find(([key]) => key === view.sort);
    const sign = view.dir === "asc" ? 1 : -1;
    const rows = [...alarms].sort((x, y) => {
      const a = by(x);
      const b = by(y);
      return (a < b ? -1 : a > b ? 1 : y.alarm_id - x.alarm_id) * sign;
    }).map((a) => {
      const fresh = newestSeen !== null && a.alarm_id > newestSeen;
      return h("tr", { class: `sev-${a.severity}${fresh ? " fresh" : ""}` }, columns.map(([key]) => cell(key, a, fresh)));
    });
    body.replaceChildren(...rows);
  }

  const table = h("table", { class: "queue" },
    h("caption", { class: "visually-hidden" }, t("queue.heading")), h("thead", {}, head), body);
  root.append(h("div", { class: "title" }, h("h1", {}, t("queue.heading")), live), filterBar, note, table);

  async function load() {
    const query = new URLSearchParams({ limit: "200" });
    for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
    const page = await fetched(note, api("GET", `/v1/alarms?${query}`));
    if (page === null || stopped) return;
    alarms = page.alarms;
    for (const a of alarms) {
      seen.model.add(a.model);
      seen.customer_id.add(a.customer_id);
      if (a.region) seen.region.add(a.region);
    }
    drawFilters();
    draw();
    if (alarms.length === 0) note.append(h("p", {}, t("queue.empty")));
    const newest = alarms.reduce((m, a) => Math.max(m, a.alarm_id), 0);
    if (newestSeen === null) newestSeen = newest;
  }

  drawFilters();
  drawHead();
  load();
  const events = new EventSource("/console/events");
  events.onopen = () => { live.className = "live on"; live.textContent = t("live.on"); };
  events.onerror = () => { live.className = "live off"; live.textContent = t("live.off"); };
  events.addEventListener("alarms", () => load());
  events.addEventListener("signed-out", () => { events.close(); shell.signedOut(); });
  return () => { stopped = true; events.close(); };
}
