// One alarm: what happened, the preliminary diagnosis (causes ranked, remote-fix steps as a
// checklist the expert ticks, parts and skills), the signals around it, and the expert's
// actions the API offers: acknowledge, resolve remotely with the steps ticked, dispatch.

import { api, h, problem, t, when } from "./api.js";
import { drawSignals } from "./chart.js";

function facts(alarm) {
  const rows = [
    [t("col.machine"), `${alarm.machine_id} (${alarm.model})`],
    [t("col.severity"), t(`severity.${alarm.severity}`)],
    [t("col.state"), t(`state.${alarm.state}`)],
    [t("alarm.raised"), when(alarm.raised_at)],
    [t("alarm.last_seen"), when(alarm.last_seen_at)],
  ];
  if (alarm.worst_value !== null) rows.push([t("alarm.value"), String(alarm.worst_value)]);
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function outcome(alarm) {
  const lines = [];
  if (alarm.acknowledged_at) lines.push(t("alarm.acked_by", { who: alarm.acknowledged_by || "" }));
  if (alarm.resolution) lines.push(t("alarm.resolved", { how: t(`resolution.${alarm.resolution}`) }));
  return lines.map((line) => h("p", { role: "status" }, line));
}

function diagnosisSection(diagnosis, ticked) {
  const causes = [...diagnosis.causes].sort((a, b) => b.likelihood - a.likelihood);
  return h("section", { "aria-labelledby": "diagnosis" },
    h("h2", { id: "diagnosis" }, t("alarm.diagnosis")),
    h("p", {}, diagnosis.summary),
    h("h3", {}, t("alarm.causes")),
    h("ol", { class: "causes" }, causes.map((c) =>
      h("li", {}, c.cause, " ", h("span", { class: "likelihood" }, `${Math.round(c.likelihood * 100)}%`)))),
    h("h3", {}, t("alarm.steps")),
    h("ul", { class: "steps" }, diagnosis.remote_steps.map((step, i) => {
      const id = `step-${i}`;
      return h("li", {}, h("input", {
        type: "checkbox", id, onchange: (e) => { if (e.target.checked) ticked.add(step); else ticked.delete(step); },
      }), " ", h("label", { for: id }, step));
    })),
    diagnosis.parts.length ? [h("h3", {}, t("alarm.parts")),
      h("ul", {}, diagnosis.parts.map((p) => h("li", {}, `${p.name} (${p.part_no}) × ${p.quantity}`)))] : null,
    diagnosis.skills.length ? [h("h3", {}, t("alarm.skills")), h("p", {}, diagnosis.skills.join(", "))] : null);
}

function actions(detail, reload) {
  const alarm = detail.alarm;
  const message = h("div", { role: "status" });
  const act = async (fn) => {
    message.replaceChildren();
    try {
      await fn();
    } catch (err) {
      problem(message, err);
    }
  };
  const done = alarm.resolution !== null;
  const ack = h("button", { type: "button", disabled: alarm.acknowledged_at !== null,
    onclick: () => act(async () => { await api("POST", `/v1/alarms/${alarm.alarm_id}/ack`, {}); reload(); }) },
  t("action.ack"));
  const resolve = h("button", { type: "button", disabled: done,
    onclick: () => act(async () => {
      await api("POST", `/v1/alarms/${alarm.alarm_id}/resolve`, { resolution: "remote", steps: [...detail.ticked] });
      reload();
    }) }, t("action.resolve"));
  const dispatch = h("button", { type: "button", disabled: done,
    onclick: () => act(async () => {
      const order = await api("POST", `/v1/alarms/${alarm.alarm_id}/dispatch`, {});
      await reload();
      document.getElementById("actions-result").replaceChildren(h("p", { role: "status", class: "ok" },
        t("alarm.dispatched", { order: order.order_id, engineer: order.engineer_id, eta: when(order.eta) })));
    }) }, t("action.dispatch"));
  return h("section", { "aria-labelledby": "actions" },
    h("h2", { id: "actions" }, t("alarm.actions")),
    h("div", { class: "buttons" }, ack, resolve, dispatch), message);
}

export function showAlarm(root, shell, alarmId) {
  let undraw = () => {};
  let stopped = false;
  const result = h("div", { id: "actions-result" });
  // An engineer reaches an alarm from one of their orders (the API shows them those alone).
  const back = () => (shell.me().role === "engineer"
    ? h("p", {}, h("a", { href: "#/orders" }, t("alarm.back_orders")))
    : h("p", {}, h("a", { href: "#/alarms" }, t("alarm.back"))));
  async function load() {
    let detail;
    try {
      detail = await api("GET", `/v1/alarms/${alarmId}`);
    } catch (err) {
      root.replaceChildren(back());
      problem(root, err);
      return;
    }
    if (stopped) return;
    undraw();
    detail.ticked = new Set();
    const staff = detail.view === "staff" && ["admin", "expert"].includes(shell.me().role);
    const charts = h("section", { "aria-labelledby": "signals" }, h("h2", { id: "signals" }, t("alarm.signals")));
    root.replaceChildren(h("div", { class: "alarm" },
      back(),
      h("h1", {}, t("alarm.heading", { id: detail.alarm.alarm_id, title: detail.alarm.title })),
      facts(detail.alarm), outcome(detail.alarm),
      staff ? actions(detail, load) : null, result,
      diagnosisSection(detail.diagnosis, detail.ticked), charts));
    undraw = drawSignals(charts, detail);
  }
  load();
  return () => { stopped = true; undraw(); };
}
