// The engineer's orders, phone-sized: for each order the machine, the diagnosis, the remote
// steps the expert already tried, the parts to pick up and where (a warehouse or the van), the
// route (distance, ETA, a sketch drawn from the data), and the one next step its state allows:
// accept, start travel, arrive, complete with the parts used.

import { api, h, problem, t, when } from "./api.js";
import { routeSvg } from "./route.js";

const NEXT = {
  dispatched: ["accept", "orders.accept"],
  accepted: ["start-travel", "orders.start"],
  en_route: ["arrive", "orders.arrive"],
  on_site: ["complete", "orders.complete"],
};
const ACTIVE = new Set(["dispatched", "accepted", "en_route", "on_site"]);

// What an order refers to, read once per page: machines, alarms, warehouses (same origin API).
function lookups() {
  const cache = new Map();
  return (path) => {
    if (!cache.has(path)) cache.set(path, api("GET", path).catch(() => null));
    return cache.get(path);
  };
}

function minutes(m) {
  return m < 90 ? t("eng.minutes", { n: Math.round(m) }) : t("eng.hours", { n: (m / 60).toFixed(1) });
}

function machineLine(o, machine) {
  if (!machine) return o.machine_id;
  const name = machine.name ? `${machine.name} · ` : "";
  return `${name}${o.machine_id} (${machine.model})`;
}

function diagnosisPart(o, detail) {
  if (!o.alarm_id) return null;
  const d = detail && detail.diagnosis;
  return h("section", { class: "eng-block", "aria-label": t("eng.diagnosis") },
    h("h3", {}, t("eng.diagnosis")),
    d ? h("p", { class: "eng-fault" }, d.title) : null,
    d ? h("p", { class: "hint" }, d.summary) : null,
    h("p", {}, h("a", { href: `#/alarms/${o.alarm_id}` }, t("orders.diagnosis"))));
}

function triedPart(o) {
  const steps = o.steps_tried || [];
  return h("section", { class: "eng-block", "aria-label": t("eng.tried") },
    h("h3", {}, t("eng.tried")),
    steps.length ? h("ol", { class: "tried" }, steps.map((s) => h("li", {}, s))) : h("p", { class: "hint" }, t("eng.tried_none")));
}

function partNames(detail) {
  const names = new Map();
  if (detail && detail.diagnosis) for (const p of detail.diagnosis.parts) names.set(p.part_no, p.name);
  return names;
}

function partsPart(o, detail, warehouse) {
  const names = partNames(detail);
  const lines = (o.reserved.length ? o.reserved : o.parts);
  const pickup = o.route && o.route.pickup_warehouse_id;
  const where = pickup
    ? t("eng.pickup_at", { place: warehouse ? `${warehouse.name} (${pickup})` : pickup })
    : t("eng.pickup_van");
  return h("section", { class: "eng-block", "aria-label": t("eng.parts") },
    h("h3", {}, t("eng.parts")),
    h("p", { class: "eng-where" }, where),
    lines.length
      ? h("ul", { class: "parts" }, lines.map((p) => h("li", {},
        `${names.get(p.part_no) || p.part_no} (${p.part_no}) × ${p.quantity}`)))
      : h("p", { class: "hint" }, t("eng.parts_none")));
}

function routePart(o, warehouse, self) {
  const r = o.route;
  if (!r) return null;
  const points = [];
  const tr = o.tracking;
  // Where the engineer is: the last reported position, else where they start from (home).
  if (tr && tr.lat !== null && tr.lon !== null) points.push({ lat: tr.lat, lon: tr.lon, label: t("eng.you"), kind: "start" });
  else if (self && self.home_lat !== null && self.home_lon !== null) points.push({ lat: self.home_lat, lon: self.home_lon, label: t("eng.home"), kind: "start" });
  for (const stop of r.stops) {
    const label = stop.kind === "warehouse" ? (warehouse ? warehouse.name : stop.place_id) : t("eng.site");
    points.push({ lat: stop.lat, lon: stop.lon, label, kind: stop.kind });
  }
  const live = tr && tr.distance_km !== null && ["accepted", "en_route"].includes(o.state)
    ? h("p", {}, t("eng.live", { km: tr.distance_km.toFixed(1), eta: when(tr.eta) })) : null;
  return h("section", { class: "eng-block", "aria-label": t("eng.route") },
    h("h3", {}, t("eng.route")),
    h("p", {}, t("eng.route_line", { km: r.distance_km.toFixed(1), time: minutes(r.eta_min) })),
    live,
    h("ol", { class: "stops" }, r.stops.map((stop) => h("li", {},
      `${stop.kind === "warehouse" ? t("eng.stop_warehouse") : t("eng.stop_site")}: `
      + t("eng.stop_line", { km: stop.distance_km.toFixed(1), time: minutes(stop.arrive_min) })))),
    routeSvg(points, t("eng.route_sketch")));
}

function completeForm(o, detail, submit) {
  const names = partNames(detail);
  const lines = o.reserved.length ? o.reserved : o.parts;
  const inputs = lines.map((p) => {
    const id = `used-${o.order_id}-${p.part_no}`;
    const input = h("input", { id, type: "number", min: "0", max: "1000", step: "1", value: String(p.quantity), inputmode: "numeric" });
    return [p.part_no, input, h("label", { for: id }, `${names.get(p.part_no) || p.part_no} (${p.part_no})`)];
  });
  const form = h("form", {
    class: "used",
    onsubmit: (e) => {
      e.preventDefault();
      const used = inputs
        .map(([part_no, input]) => ({ part_no, quantity: Math.max(0, Math.floor(Number(input.value) || 0)) }))
        .filter((p) => p.quantity > 0);
      submit({ parts_used: used });
    },
  },
  h("h3", {}, t("eng.used")),
  inputs.length ? inputs.map(([, input, label]) => h("div", { class: "used-line" }, label, input)) : h("p", { class: "hint" }, t("eng.parts_none")),
  h("button", { type: "submit" }, t("orders.complete")));
  return form;
}

export function showOrders(root, shell) {
  const list = h("div", { class: "orders" });
  const message = h("div");
  root.append(h("h1", {}, t("orders.heading")), message, list);
  let stopped = false;
  const read = lookups();

  async function step(order, action, body) {
    message.replaceChildren();
    try {
      await api("POST", `/v1/orders/${order.order_id}/${action}`, body);
    } catch (err) {
      problem(message, err);
    }
    await load();
  }

  const me = shell.me();
  async function card(o) {
    const [machine, detail, warehouse, self] = await Promise.all([
      read(`/v1/machines/${encodeURIComponent(o.machine_id)}`),
      o.alarm_id ? read(`/v1/alarms/${o.alarm_id}`) : null,
      o.route && o.route.pickup_warehouse_id ? read(`/v1/warehouses/${encodeURIComponent(o.route.pickup_warehouse_id)}`) : null,
      me.role === "engineer" ? read(`/v1/engineers/${encodeURIComponent(me.subject_id)}`) : null,
    ]);
    const next = NEXT[o.state];
    const active = ACTIVE.has(o.state);
    let action = null;
    if (o.state === "on_site") action = completeForm(o, detail, (body) => step(o, "complete", body));
    else if (next) action = h("button", { type: "button", onclick: () => step(o, next[0]) }, t(next[1]));
    return h("article", { class: `order${active ? " active" : ""}`, "aria-labelledby": `order-${o.order_id}` },
      h("h2", { id: `order-${o.order_id}` }, t("order.heading", { id: o.order_id })),
      h("p", { class: "state" }, t(`order.state.${o.state}`)),
      h("dl", { class: "facts" },
        h("dt", {}, t("orders.machine")), h("dd", {}, machineLine(o, machine)),
        h("dt", {}, t("orders.eta")), h("dd", {}, when(o.eta))),
      action,
      active ? [diagnosisPart(o, detail), triedPart(o), partsPart(o, detail, warehouse), routePart(o, warehouse, self)]
        : (o.alarm_id ? h("p", {}, h("a", { href: `#/alarms/${o.alarm_id}` }, t("orders.diagnosis"))) : null));
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
    // Open orders first (the next job on top), then the finished ones, newest first.
    orders.sort((a, b) => (ACTIVE.has(b.state) - ACTIVE.has(a.state)) || (b.order_id - a.order_id));
    const cards = await Promise.all(orders.map(card));
    if (stopped) return;
    list.replaceChildren(...cards);
    if (cards.length === 0) list.append(h("p", {}, t("orders.empty")));
  }
  load();
  return () => { stopped = true; };
}
