// The engineer's orders, phone-sized: each order's machine, ETA and parts, and the one next
// step its state allows (accept, start travel, arrive, complete).

import { api, h, problem, t, when } from "./api.js";

const NEXT = {
  dispatched: ["accept", "orders.accept"],
  accepted: ["start-travel", "orders.start"],
  en_route: ["arrive", "orders.arrive"],
  on_site: ["complete", "orders.complete"],
};

export function showOrders(root) {
  const list = h("div", { class: "orders" });
  const message = h("div");
  root.append(h("h1", {}, t("orders.heading")), message, list);
  let stopped = false;

  async function step(order, action) {
    message.replaceChildren();
    try {
      await api("POST", `/v1/orders/${order.order_id}/${action}`, action === "complete" ? { parts_used: [] } : undefined);
    } catch (err) {
      problem(message, err);
    }
    await load();
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
    const cards = orders.map((o) => {
      const next = NEXT[o.state];
      return h("article", { class: "order", "aria-labelledby": `order-${o.order_id}` },
        h("h2", { id: `order-${o.order_id}` }, t("order.heading", { id: o.order_id })),
        h("p", { class: "state" }, t(`order.state.${o.state}`)),
        h("dl", { class: "facts" },
          h("dt", {}, t("orders.machine")), h("dd", {}, o.machine_id),
          h("dt", {}, t("orders.eta")), h("dd", {}, when(o.eta)),
          h("dt", {}, t("orders.parts")), h("dd", {}, o.parts.map((p) => `${p.part_no} × ${p.quantity}`).join(", ") || "—")),
        o.alarm_id ? h("p", {}, h("a", { href: `#/alarms/${o.alarm_id}` }, t("orders.diagnosis"))) : null,
        next ? h("button", { type: "button", onclick: () => step(o, next[0]) }, t(next[1])) : null);
    });
    list.replaceChildren(...cards);
    if (cards.length === 0) list.append(h("p", {}, t("orders.empty")));
  }
  load();
  return () => { stopped = true; };
}
