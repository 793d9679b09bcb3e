// The customer's service orders: each order's machine and fault, its progress (dispatched,
// accepted, on the way, on site, completed) with when each step happened, the engineer's ETA
// (recomputed from the engineer's live position while on the way), and after completion the
// survey, answered in the page. The API shows a customer its own orders only, without staff
// names or positions.

import { api, h, problem, t, when } from "./api.js";
import { surveyForm } from "./survey.js";

const PROGRESS = ["dispatched", "accepted", "en_route", "on_site", "completed"];
const DONE = new Set(["completed", "closed"]);

function progress(order, events) {
  const reached = new Map();
  for (const e of events) if (!reached.has(e.to_state)) reached.set(e.to_state, e.at);
  const current = order.state === "closed" ? "completed" : order.state;
  const upto = PROGRESS.indexOf(current);
  return h("ol", { class: "progress", "aria-label": t("cust.progress") }, PROGRESS.map((state, i) => {
    const at = reached.get(state) || (state === "completed" ? reached.get("closed") : null);
    const cls = i < upto ? "done" : i === upto ? "current" : "todo";
    return h("li", { class: cls, "aria-current": i === upto ? "step" : null },
      h("span", { class: "step-name" }, t(`order.state.${state}`)), at ? h("span", { class: "hint" }, ` ${when(at)}`) : null);
  }));
}

function eta(order) {
  if (DONE.has(order.state) || order.state === "cancelled") return null;
  const live = order.live_eta && ["accepted", "en_route"].includes(order.state);
  const at = live ? order.live_eta : order.eta;
  if (!at) return null;
  return h("p", { class: "eta" }, t(live ? "cust.eta_live" : "cust.eta", { eta: when(at) }));
}

export function showService(root, shell) {
  const list = h("div", { class: "service" });
  const message = h("div");
  root.append(h("h1", {}, t("cust.service_heading")), message, list);
  let stopped = false;
  const titles = new Map();

  async function title(order) {
    if (!order.alarm_id) return order.fault || "—";
    if (!titles.has(order.alarm_id)) {
      titles.set(order.alarm_id, api("GET", `/v1/alarms/${order.alarm_id}`).then((d) => d.alarm.title).catch(() => order.fault || "—"));
    }
    return titles.get(order.alarm_id);
  }

  async function card(order) {
    const [fault, events] = await Promise.all([
      title(order), api("GET", `/v1/orders/${order.order_id}/events`).catch(() => []),
    ]);
    let survey = null;
    if (DONE.has(order.state)) {
      survey = order.survey_answered
        ? h("p", { class: "ok" }, t("survey.thanks"))
        : surveyForm(order, shell.me(), () => load());
    }
    return h("article", { class: "order", "aria-labelledby": `svc-${order.order_id}` },
      h("h2", { id: `svc-${order.order_id}` }, t("order.heading", { id: order.order_id })),
      h("p", { class: "state" }, t(`order.state.${order.state}`)),
      h("dl", { class: "facts" },
        h("dt", {}, t("orders.machine")), h("dd", {}, h("a", { href: `#/machines/${encodeURIComponent(order.machine_id)}` }, order.machine_id)),
        h("dt", {}, t("col.fault")), h("dd", {}, order.alarm_id ? h("a", { href: `#/alarms/${order.alarm_id}` }, fault) : fault),
        h("dt", {}, t("cust.engineer")), h("dd", {}, t(order.engineer_assigned ? "cust.engineer_yes" : "cust.engineer_no"))),
      eta(order), progress(order, events), survey);
  }

  async function load() {
    let orders;
    try {
      orders = await api("GET", "/v1/orders?limit=100");
    } catch (err) {
      problem(message, err);
      return;
    }
    if (stopped) return;
    const cards = await Promise.all(orders.map(card));
    if (stopped) return;
    list.replaceChildren(...cards);
    if (cards.length === 0) list.append(h("p", {}, t("orders.empty")));
  }
  load();
  // Progress and ETA change while the page is open (the engineer moves): read them again.
  // A survey being filled in is not redrawn under the person's hands.
  const filling = () => [...list.querySelectorAll(".survey select")].some((s) => s.value !== "");
  const timer = setInterval(() => { if (!filling()) load(); }, 15000);
  return () => { stopped = true; clearInterval(timer); };
}
