// One machine, as its customer (or staff) sees it: status and newest values, its work summaries
// as charts by day, week or month (the period is in the address, #/machines/{id}?period=week),
// the maintenance plan's items, and its alarms.

import { api, h, problem, t, when } from "./api.js";
import { drawSummary } from "./summary-charts.js";
import { dueTable } from "./fleet.js";

const PERIODS = ["day", "week", "month"];
// How far back each period looks: 30 days, 12 weeks, 12 months (the API allows 400 days).
const BACK_DAYS = { day: 29, week: 7 * 12 - 1, month: 364 };

function periodFromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return PERIODS.includes(query.get("period")) ? query.get("period") : "day";
}

function isoDay(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
}

function facts(machine, latest) {
  const rows = [
    [t("col.model"), machine.model],
    [t("fleet.status"), t(machine.online ? "fleet.online" : "fleet.offline")],
    [t("fleet.last"), when(machine.last_reading_at)],
    [t("fleet.hours"), machine.engine_hours === null ? "—" : machine.engine_hours.toFixed(1)],
    [t("cust.fuel"), latest && latest.fuel_level_pct !== null ? `${latest.fuel_level_pct.toFixed(0)} %` : "—"],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function alarmsTable(alarms) {
  if (alarms.length === 0) return h("p", {}, t("cust.alarms_none"));
  return h("table", { class: "queue" },
    h("thead", {}, h("tr", {}, [t("col.severity"), t("col.raised"), t("col.fault"), t("col.state")]
      .map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, alarms.map((a) => h("tr", { class: `sev-${a.severity}` },
      h("td", {}, h("span", { class: `badge sev-${a.severity}` }, t(`severity.${a.severity}`))),
      h("td", {}, when(a.raised_at)),
      h("td", {}, h("a", { href: `#/alarms/${a.alarm_id}` }, a.title)),
      h("td", {}, t(`state.${a.state}`))))));
}

export function showMachine(root, shell, machineId) {
  const id = encodeURIComponent(machineId);
  const period = periodFromAddress();
  const message = h("div");
  const head = h("div", { class: "machine-head" });
  const charts = h("section", { "aria-labelledby": "summary" });
  const upkeep = h("section", { "aria-labelledby": "maintenance" }, h("h2", { id: "maintenance" }, t("cust.maintenance")));
  const alarms = h("section", { "aria-labelledby": "machine-alarms" }, h("h2", { id: "machine-alarms" }, t("cust.alarms")));
  const select = h("select", {
    id: "period",
    onchange: (e) => { location.hash = `#/machines/${id}?period=${e.target.value}`; },
  }, PERIODS.map((p) => h("option", { value: p, selected: p === period }, t(`cust.period.${p}`))));
  charts.append(
    h("div", { class: "title" }, h("h2", { id: "summary" }, t("cust.summary")),
      h("label", { for: "period" }, t("cust.period"), " ", select)));
  const back = shell.me().role === "customer"
    ? h("p", {}, h("a", { href: "#/fleet" }, t("cust.back_fleet")))
    : null;
  root.append(back, head, message, charts, upkeep, alarms);
  let stopped = false;
  let undraw = () => {};

  (async () => {
    let machine;
    try {
      machine = await api("GET", `/v1/machines/${id}`);
    } catch (err) {
      problem(message, err);
      return;
    }
    const latest = machine.last_reading_at ? await api("GET", `/v1/machines/${id}/latest`).catch(() => null) : null;
    if (stopped) return;
    head.append(h("h1", {}, machine.name ? `${machine.name} (${machine.machine_id})` : machine.machine_id), facts(machine, latest));
    const to = new Date();
    const from = new Date(to.getTime() - BACK_DAYS[period] * 86400_000);
    const [summary, plan, found] = await Promise.all([
      api("GET", `/v1/machines/${id}/summary?period=${period}&from=${isoDay(from)}&to=${isoDay(to)}`).catch((err) => err),
      api("GET", `/v1/machines/${id}/maintenance`).catch((err) => err),
      api("GET", `/v1/alarms?machine_id=${id}&limit=20`).catch((err) => err),
    ]);
    if (stopped) return;
    if (summary instanceof Error) problem(charts, summary);
    else undraw = drawSummary(charts, machineId, summary.buckets);
    if (plan instanceof Error) problem(upkeep, plan);
    else upkeep.append(plan.items.length ? dueTable(plan.items, false) : h("p", {}, t("cust.due_none")));
    if (found instanceof Error) problem(alarms, found);
    else alarms.append(alarmsTable(found.alarms));
  })();
  return () => { stopped = true; undraw(); };
}
