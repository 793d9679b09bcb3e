// The customer's fleet, from /v1/machines (which answers a customer with its own machines
// only): status, last reading, hours today, fuel level, engine hours and open alarms, each
// machine a link to its page; then the maintenance due across the fleet.

import { api, h, problem, t, when } from "./api.js";

const num = (v, digits = 1) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));

// Today's figures per machine, in the customer's own time zone: the last day of the default
// range is today there; its figures per machine come from that one day.
async function today() {
  const days = await api("GET", "/v1/fleet/summary?period=day");
  const last = days.buckets[days.buckets.length - 1];
  if (!last) return new Map();
  const day = last.start.slice(0, 10);
  const one = await api("GET", `/v1/fleet/summary?period=day&from=${day}&to=${day}`);
  return new Map(one.per_machine.map((m) => [m.machine_id, m]));
}

// The newest fuel level of each machine that ever reported (others have no reading to ask for).
async function fuel(machines) {
  const found = await Promise.all(machines.filter((m) => m.last_reading_at).slice(0, 200).map(async (m) => {
    const r = await api("GET", `/v1/machines/${encodeURIComponent(m.machine_id)}/latest`).catch(() => null);
    return [m.machine_id, r ? r.fuel_level_pct : null];
  }));
  return new Map(found);
}

function remaining(hours) {
  if (hours === null || hours === undefined) return "—";
  return hours < 0 ? t("cust.due_over", { n: num(-hours, 0) }) : t("cust.due_hours", { n: num(hours, 0) });
}

export function dueTable(items, withMachine) {
  const cols = [withMachine ? t("col.machine") : null, t("cust.due_item"), t("cust.due_status"), t("cust.due_remaining"), t("cust.due_date")]
    .filter((x) => x !== null);
  return h("table", { class: "due" },
    h("thead", {}, h("tr", {}, cols.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, items.map((i) => h("tr", { class: `due-${i.status}` },
      withMachine ? h("td", {}, h("a", { href: `#/machines/${encodeURIComponent(i.machine_id)}` }, i.machine_id)) : null,
      h("td", {}, i.name),
      h("td", {}, h("span", { class: `badge due-${i.status}` }, t(`cust.due_status.${i.status}`))),
      h("td", {}, remaining(i.remaining_h)),
      h("td", {}, i.forecast_due_date || i.due_date || "—")))));
}

export function showFleet(root) {
  const body = h("tbody");
  const message = h("div");
  const due = h("section", { "aria-labelledby": "fleet-due" }, h("h2", { id: "fleet-due" }, t("cust.due_heading")));
  root.append(h("h1", {}, t("fleet.heading")), message,
    h("table", { class: "fleet" },
      h("thead", {}, h("tr", {}, [t("col.machine"), t("col.model"), t("fleet.status"), t("fleet.last"),
        t("cust.hours_today"), t("cust.fuel"), t("fleet.hours"), t("fleet.open_alarms")].map((x) => h("th", { scope: "col" }, x)))),
      body), due);
  let stopped = false;
  (async () => {
    let page;
    let figures = new Map();
    let levels = new Map();
    try {
      page = await api("GET", "/v1/machines?limit=1000");
      [figures, levels] = await Promise.all([today(), fuel(page.machines)]);
    } catch (err) {
      problem(message, err);
      if (!page) return;
    }
    if (stopped) return;
    body.replaceChildren(...page.machines.map((m) => {
      const f = figures.get(m.machine_id);
      const level = levels.get(m.machine_id);
      return h("tr", {},
        h("td", {}, h("a", { href: `#/machines/${encodeURIComponent(m.machine_id)}` }, m.name ? `${m.name} (${m.machine_id})` : m.machine_id)),
        h("td", {}, m.model),
        h("td", {}, h("span", { class: `badge ${m.online ? "online" : "offline"}` }, t(m.online ? "fleet.online" : "fleet.offline"))),
        h("td", {}, when(m.last_reading_at)),
        h("td", {}, f ? t("cust.hours_value", { working: num(f.working_hours), engine: num(f.engine_hours) }) : "—"),
        h("td", {}, level === null || level === undefined ? "—" : `${num(level, 0)} %`),
        h("td", {}, num(m.engine_hours)),
        h("td", {}, m.open_alarms > 0 ? h("a", { href: "#/alarms?state=open" }, String(m.open_alarms)) : "0"));
    }));
    if (page.machines.length === 0) message.append(h("p", {}, t("fleet.empty")));
    try {
      const found = await api("GET", "/v1/maintenance/due?limit=50");
      if (stopped) return;
      due.append(found.items.length ? dueTable(found.items, true) : h("p", {}, t("cust.due_none")));
    } catch (err) {
      problem(due, err);
    }
  })();
  return () => { stopped = true; };
}
