// The dispatch board: every open order with its engineer, ETA and service-level clocks. The
// clocks count down in the page each second from the timers' due times; a clock past due, or a
// timer that fired as a breach, is red. Orders and timers are read again every 10 s, and at
// once when the alarm feed says something changed (a dispatch moves its alarm).

import { api, fetched, h, t, when } from "./api.js";

const OPEN = ["created", "dispatched", "accepted", "en_route", "on_site", "completed"];
const REFRESH_MS = 10_000;

export function clock(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `${hh}:${mm}:${ss}`;
}

// Order states that show a clock's event has happened: the engineer is on site, the work done.
const MET_BY = { arrival_deadline: ["on_site", "completed"], completion_escalation: ["completed"] };

// A clock still pending whose event the order's state shows, before its due time, is met: the
// timer itself is judged only when it comes due, but the board must not count it down meanwhile.
export function metByState(timer, order) {
  return timer.fired_at === null && (MET_BY[timer.kind] || []).includes(order.state)
    && Date.parse(timer.due_at) > Date.now();
}

// One timer's chip: its kind and what is left (pending), or how it ended (fired, or met).
function chip(timer, order) {
  const label = t(`board.timer.${timer.kind}`);
  if (metByState(timer, order)) {
    return h("span", { class: "sla done" }, label, " ", t("board.verdict.satisfied"));
  }
  if (timer.fired_at !== null) {
    const breach = timer.verdict === "breach";
    return h("span", { class: `sla ${breach ? "breach" : "done"}`, role: breach ? "alert" : null },
      label, " ", t(`board.verdict.${timer.verdict}`));
  }
  const due = Date.parse(timer.due_at);
  return h("span", { class: "sla pending", "data-due": due }, label, " ", h("span", { class: "left" }));
}

function tick(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll(".sla.pending")) {
    const left = Number(el.dataset.due) - now;
    const over = left < 0;
    el.classList.toggle("breach", over);
    el.setAttribute("role", over ? "alert" : "timer");
    el.querySelector(".left").textContent = over ? t("board.overdue", { time: clock(left) }) : clock(left);
  }
}

export function showBoard(root, shell) {
  const body = h("tbody");
  const note = h("div");
  const summary = h("p", { class: "hint", role: "status" });
  root.append(
    h("div", { class: "title" }, h("h1", {}, t("board.heading")), summary), note,
    h("table", { class: "board" },
      h("caption", { class: "visually-hidden" }, t("board.heading")),
      h("thead", {}, h("tr", {}, [t("board.order"), t("col.severity"), t("col.machine"), t("board.state"),
        t("board.engineer"), t("orders.eta"), t("board.sla")].map((x) => h("th", { scope: "col" }, x)))),
      body));
  let stopped = false;
  // The monitoring desk follows orders; the alarms behind them are the experts'.
  const readsAlarms = ["admin", "expert"].includes(shell.me().role);

  async function load() {
    const got = await fetched(note, Promise.all([api("GET", "/v1/orders?limit=500"), api("GET", "/v1/sla/timers")]));
    if (got === null || stopped) return;
    const [orders, timers] = got;
    const byOrder = new Map();
    for (const timer of timers) {
      if (!byOrder.has(timer.order_id)) byOrder.set(timer.order_id, []);
      byOrder.get(timer.order_id).push(timer);
    }
    const open = orders.filter((o) => OPEN.includes(o.state));
    let breaches = 0;
    body.replaceChildren(...open.map((o) => {
      const clocks = byOrder.get(o.order_id) || [];
      const breached = clocks.some((c) => c.verdict === "breach"
        || (c.fired_at === null && !metByState(c, o) && Date.parse(c.due_at) < Date.now()));
      if (breached) breaches += 1;
      const eta = o.tracking && o.tracking.eta ? o.tracking.eta : o.eta;
      return h("tr", { class: breached ? "breached" : null, "aria-label": t("order.heading", { id: o.order_id }) },
        h("td", {}, o.alarm_id && readsAlarms ? h("a", { href: `#/alarms/${o.alarm_id}` }, t("order.heading", { id: o.order_id }))
          : t("order.heading", { id: o.order_id })),
        h("td", {}, h("span", { class: `badge sev-${o.severity}` }, t(`severity.${o.severity}`))),
        h("td", {}, o.machine_id),
        h("td", {}, t(`order.state.${o.state}`)),
        h("td", {}, o.engineer_id || "—"),
        h("td", {}, when(eta)),
        h("td", { class: "clocks" }, clocks.length ? clocks.map((c) => chip(c, o)) : "—"));
    }));
    summary.textContent = t("board.summary", { open: open.length, breaches });
    if (open.length === 0) note.append(h("p", {}, t("board.empty")));
    tick(body);
  }

  load();
  const ticking = setInterval(() => tick(body), 1000);
  const refresh = setInterval(load, REFRESH_MS);
  const events = shell.me().role === "engineer" ? null : new EventSource("/console/events");
  if (events) {
    events.addEventListener("alarms", () => load());
    events.addEventListener("signed-out", () => { events.close(); shell.signedOut(); });
  }
  return () => { stopped = true; clearInterval(ticking); clearInterval(refresh); if (events) events.close(); };
}
