// The alarm queue, live: the server's event stream says when the alarms in the caller's scope
// changed, and the queue is read again from /v1/alarms with the chosen filters (kept in the
// address, so a filtered queue can be bookmarked). Alarms that arrived while the page was open
// are marked new.

import { api, h, problem, t, when } from "./api.js";

const SEVERITIES = ["critical", "major", "minor", "info"];
const STATES = ["open", "cleared"];

function filtersFromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return {
    severity: SEVERITIES.includes(query.get("severity")) ? query.get("severity") : "",
    state: STATES.includes(query.get("state")) ? query.get("state") : "",
  };
}

function choice(id, label, values, prefix, chosen, onchange) {
  const select = h("select", { id, onchange },
    h("option", { value: "" }, t("filter.any")),
    values.map((v) => h("option", { value: v, selected: v === chosen }, t(`${prefix}.${v}`))));
  return h("label", { for: id }, label, " ", select);
}

export function showQueue(root, shell) {
  const filters = filtersFromAddress();
  const staff = shell.me().role !== "customer";
  const live = h("span", { class: "live off", role: "status" }, t("live.off"));
  const body = h("tbody");
  const note = h("div");
  let newestSeen = null;
  let stopped = false;

  const readdress = () => {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/alarms${query ? `?${query}` : ""}`);
    load();
  };
  const table = h("table", { class: "queue" },
    h("caption", { class: "visually-hidden" }, t("queue.heading")),
    h("thead", {}, h("tr", {},
      [t("col.severity"), t("col.raised"), t("col.fault"), t("col.machine"), t("col.model"),
        staff ? t("col.customer") : null, t("col.state"), t("col.ack")]
        .filter((x) => x !== null).map((x) => h("th", { scope: "col" }, x)))),
    body);
  root.append(
    h("div", { class: "title" }, h("h1", {}, t("queue.heading")), live),
    h("div", { class: "filters" },
      choice("severity", t("filter.severity"), SEVERITIES, "severity", filters.severity,
        (e) => { filters.severity = e.target.value; readdress(); }),
      choice("state", t("filter.state"), STATES, "state", filters.state,
        (e) => { filters.state = e.target.value; readdress(); })),
    note, table);

  async function load() {
    const query = new URLSearchParams({ limit: "200" });
    for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
    let page;
    try {
      page = await api("GET", `/v1/alarms?${query}`);
    } catch (err) {
      note.replaceChildren();
      problem(note, err);
      return;
    }
    if (stopped) return;
    note.replaceChildren();
    const rows = page.alarms.map((a) => {
      const fresh = newestSeen !== null && a.alarm_id > newestSeen;
      return h("tr", { class: `sev-${a.severity}${fresh ? " fresh" : ""}` },
        h("td", {}, h("span", { class: `badge sev-${a.severity}` }, t(`severity.${a.severity}`)),
          fresh ? h("span", { class: "badge new" }, t("queue.new")) : null),
        h("td", {}, when(a.raised_at)),
        h("td", {}, h("a", { href: `#/alarms/${a.alarm_id}` }, a.title)),
        h("td", {}, a.machine_id),
        h("td", {}, a.model),
        staff ? h("td", {}, a.customer_id) : null,
        h("td", {}, t(`state.${a.state}`)),
        h("td", {}, a.acknowledged_at ? t("yes") : t("no")));
    });
    body.replaceChildren(...rows);
    if (rows.length === 0) note.append(h("p", {}, t("queue.empty")));
    const newest = page.alarms.reduce((m, a) => Math.max(m, a.alarm_id), 0);
    if (newestSeen === null) newestSeen = newest;
  }

  load();
  const events = new EventSource("/console/events");
  events.onopen = () => { live.className = "live on"; live.textContent = t("live.on"); };
  events.onerror = () => { live.className = "live off"; live.textContent = t("live.off"); };
  events.addEventListener("alarms", () => load());
  events.addEventListener("signed-out", () => { events.close(); shell.signedOut(); });
  return () => { stopped = true; events.close(); };
}
