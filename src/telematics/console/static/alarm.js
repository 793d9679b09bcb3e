// One alarm: what happened, the preliminary diagnosis (causes ranked, remote-fix steps as a
// checklist the expert ticks, parts and skills), the signals around it with the rule book's
// limits, the incident it belongs to and the machine's fault-code history, and the expert's
// actions: acknowledge, confirm or correct the diagnosis, resolve remotely with the steps
// ticked, escalate, dispatch the suggested engineer (with why) or pick another.

import { api, h, problem, t, when } from "./api.js";
import { drawSignals } from "./chart.js";

function facts(alarm, faults = []) {
  const rows = [
    [t("col.machine"), `${alarm.machine_id} (${alarm.model})`],
    [t("col.severity"), t(`severity.${alarm.severity}`)],
    [t("col.state"), t(`state.${alarm.state}`)],
    [t("alarm.raised"), when(alarm.raised_at)],
    [t("alarm.last_seen"), when(alarm.last_seen_at)],
  ];
  if (alarm.worst_value !== null) rows.push([t("alarm.value"), String(alarm.worst_value)]);
  if (alarm.spn !== null) rows.push([t("alarm.code"), `SPN ${alarm.spn} FMI ${alarm.fmi}`]);
  if (alarm.confirmed_fault) {
    const known = faults.find((f) => f.fault === alarm.confirmed_fault);
    rows.push([t("alarm.confirmed_as"), known ? `${known.title} (${known.fault})` : alarm.confirmed_fault]);
  }
  if (alarm.support_line !== undefined) rows.push([t("alarm.line"), t(`alarm.line_${alarm.support_line}`)]);
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function outcome(alarm) {
  const lines = [];
  if (alarm.acknowledged_at) lines.push(t("alarm.acked_by", { who: alarm.acknowledged_by || "" }));
  if (alarm.resolution) lines.push(t("alarm.resolved", { how: t(`resolution.${alarm.resolution}`) }));
  return lines.map((line) => h("p", { role: "status" }, line));
}

// The diagnosis is titled when it names another fault than the one raised: a mapped broken
// relation, or an expert's correction.
function diagnosisSection(diagnosis, raisedTitle, ticked, onTick) {
  const causes = [...diagnosis.causes].sort((a, b) => b.likelihood - a.likelihood);
  return h("section", { "aria-labelledby": "diagnosis" },
    h("h2", { id: "diagnosis" }, t("alarm.diagnosis")),
    diagnosis.title !== raisedTitle ? h("p", { class: "diagnosis-title" }, h("strong", {}, diagnosis.title)) : null,
    h("p", {}, diagnosis.summary),
    h("h3", {}, t("alarm.causes")),
    h("ol", { class: "causes" }, causes.map((c) =>
      h("li", {}, c.cause, " ", h("span", { class: "likelihood" }, `${Math.round(c.likelihood * 100)}%`)))),
    h("h3", {}, t("alarm.steps")),
    h("ul", { class: "steps" }, diagnosis.remote_steps.map((step, i) => {
      const id = `step-${i}`;
      return h("li", {}, h("input", {
        type: "checkbox", id, onchange: (e) => { if (e.target.checked) ticked.add(step); else ticked.delete(step); onTick(); },
      }), " ", h("label", { for: id }, step));
    })),
    diagnosis.parts.length ? [h("h3", {}, t("alarm.parts")),
      h("ul", {}, diagnosis.parts.map((p) => h("li", {}, `${p.name} (${p.part_no}) × ${p.quantity}`)))] : null,
    diagnosis.skills.length ? [h("h3", {}, t("alarm.skills")), h("p", {}, diagnosis.skills.join(", "))] : null);
}

// Runs an action, showing what went wrong in `message`.
function runner(message) {
  return async (fn) => {
    message.replaceChildren();
    try {
      await fn();
    } catch (err) {
      problem(message, err);
    }
  };
}

// The remote-fix steps the expert ticked, in the diagnosis's order: what a remote resolve says
// was done, and what a dispatch tells the engineer was already tried (`steps_tried`).
function tickedSteps(detail) {
  return detail.diagnosis.remote_steps.filter((s) => detail.ticked.has(s));
}

function actions(detail, faults, reload) {
  const alarm = detail.alarm;
  const id = alarm.alarm_id;
  const message = h("div", { role: "status" });
  const act = runner(message);
  const done = alarm.resolution !== null;
  const ack = h("button", { type: "button", disabled: alarm.acknowledged_at !== null,
    onclick: () => act(async () => { await api("POST", `/v1/alarms/${id}/ack`, {}); reload(); }) },
  t("action.ack"));
  const stepsNote = h("span", { class: "hint" }, t("alarm.steps_ticked", { n: detail.ticked.size }));
  detail.onTick = () => { stepsNote.textContent = t("alarm.steps_ticked", { n: detail.ticked.size }); };
  const resolve = h("button", { type: "button", disabled: done,
    onclick: () => act(async () => {
      await api("POST", `/v1/alarms/${id}/resolve`, { resolution: "remote", steps: tickedSteps(detail) });
      reload();
    }) }, t("action.resolve"));
  // Confirm, or correct to another fault of the knowledge base.
  const correction = h("select", { id: "correct-fault" },
    h("option", { value: "" }, t("alarm.as_diagnosed", { title: detail.diagnosis.title })),
    faults.filter((f) => f.fault !== detail.diagnosis.fault)
      .map((f) => h("option", { value: f.fault }, f.title)));
  const confirmNote = h("input", { id: "confirm-note", type: "text", maxlength: 4000 });
  const confirm = h("button", { type: "button",
    onclick: () => act(async () => {
      const body = { note: confirmNote.value };
      if (correction.value) body.fault = correction.value;
      await api("POST", `/v1/alarms/${id}/confirm`, body);
      reload();
    }) }, t("action.confirm"));
  const line = h("select", { id: "escalate-line" },
    [2, 3].filter((n) => n > alarm.support_line).map((n) => h("option", { value: n }, t(`alarm.line_${n}`))));
  const escalate = h("button", { type: "button", disabled: alarm.support_line >= 3,
    onclick: () => act(async () => {
      await api("POST", `/v1/alarms/${id}/escalate`, { to_line: Number(line.value) });
      reload();
    }) }, t("action.escalate"));
  return h("section", { "aria-labelledby": "actions" },
    h("h2", { id: "actions" }, t("alarm.actions")),
    h("div", { class: "buttons" }, ack, resolve, stepsNote),
    h("div", { class: "buttons" },
      h("label", { for: "correct-fault" }, t("alarm.diagnosis_is")), correction,
      h("label", { for: "confirm-note" }, t("alarm.note")), confirmNote, confirm),
    alarm.support_line < 3 ? h("div", { class: "buttons" },
      h("label", { for: "escalate-line" }, t("alarm.escalate_to")), line, escalate) : null,
    message);
}

function route(c) {
  if (c.pickup_warehouse_id === null) return t("alarm.route_van", { km: c.direct_km.toFixed(1) });
  return t("alarm.route_pickup", { warehouse: c.pickup_warehouse_id, detour: c.detour_km.toFixed(1), km: c.distance_km.toFixed(1) });
}

// Who a dispatch would send, fastest first, with why; the expert may pick another.
function dispatchSection(detail, suggestions, reload) {
  const alarm = detail.alarm;
  const message = h("div", { role: "status" });
  const act = runner(message);
  const result = h("div", { id: "actions-result" });
  const candidates = suggestions ? suggestions.candidates : [];
  let chosen = candidates.length ? candidates[0].engineer_id : null;
  const rows = candidates.map((c, i) => {
    const input = h("input", { type: "radio", name: "engineer", id: `eng-${i}`, checked: i === 0,
      onchange: () => { chosen = c.engineer_id; } });
    return h("tr", {},
      h("td", {}, input, " ", h("label", { for: `eng-${i}` }, c.engineer_id),
        i === 0 ? h("span", { class: "badge suggested" }, t("alarm.suggested")) : null),
      h("td", {}, t("alarm.eta_min", { min: Math.round(c.eta_min) })),
      h("td", {}, route(c)),
      h("td", {}, i === 0 ? (candidates.length > 1
        ? t("alarm.ahead", { min: Math.round(candidates[1].eta_min - c.eta_min), other: candidates[1].engineer_id })
        : t("alarm.only_one")) : t("alarm.behind", { min: Math.round(c.eta_min - candidates[0].eta_min) })));
  });
  const rejected = suggestions ? suggestions.rejected.map((r) =>
    h("li", {}, t(`alarm.rejected_${r.reason}`, { n: r.count }),
      r.examples.length ? ` (${r.examples.map((e) => e.engineer_id).join(", ")})` : "")) : [];
  if (suggestions && suggestions.outranked) rejected.push(h("li", {}, t("alarm.outranked", { n: suggestions.outranked })));
  const send = h("button", { type: "button", disabled: alarm.resolution !== null || candidates.length === 0,
    onclick: () => act(async () => {
      // The first is the server's own choice: let it rank again on fresh stock.
      const body = { steps_tried: tickedSteps(detail) };
      if (chosen && chosen !== candidates[0].engineer_id) body.engineer_id = chosen;
      const order = await api("POST", `/v1/alarms/${alarm.alarm_id}/dispatch`, body);
      await reload();
      document.getElementById("actions-result").replaceChildren(h("p", { role: "status", class: "ok" },
        t("alarm.dispatched", { order: order.order_id, engineer: order.engineer_id, eta: when(order.eta) })));
    }) }, t("action.dispatch"));
  return h("section", { "aria-labelledby": "dispatch" },
    h("h2", { id: "dispatch" }, t("alarm.dispatch_heading")),
    suggestions === null ? null : candidates.length === 0
      ? h("p", {}, t("alarm.nobody"))
      : h("table", { class: "suggestions" },
        h("caption", { class: "visually-hidden" }, t("alarm.dispatch_heading")),
        h("thead", {}, h("tr", {}, [t("alarm.engineer"), t("orders.eta"), t("alarm.route"), t("alarm.why")]
          .map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rows)),
    rejected.length ? h("ul", { class: "hint" }, rejected) : null,
    h("div", { class: "buttons" }, send), message, result);
}

function incident(detail) {
  if (!detail.related.length) return null;
  return h("section", { "aria-labelledby": "incident" },
    h("h2", { id: "incident" }, t("alarm.incident", { id: detail.alarm.incident_id })),
    h("ul", {}, detail.related.map((a) => h("li", {},
      h("a", { href: `#/alarms/${a.alarm_id}` }, a.title), " · ", when(a.raised_at), " · ", t(`state.${a.state}`)))));
}

function dtcHistory(alarms) {
  const codes = alarms.filter((a) => a.spn !== null);
  return h("section", { "aria-labelledby": "dtc" },
    h("h2", { id: "dtc" }, t("alarm.dtc_history")),
    codes.length === 0 ? h("p", {}, t("alarm.dtc_none")) : h("table", {},
      h("caption", { class: "visually-hidden" }, t("alarm.dtc_history")),
      h("thead", {}, h("tr", {}, ["SPN", "FMI", t("col.fault"), t("col.raised"), t("col.state"), t("alarm.occurrences")]
        .map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, codes.map((a) => h("tr", {},
        h("td", {}, String(a.spn)), h("td", {}, String(a.fmi)),
        h("td", {}, h("a", { href: `#/alarms/${a.alarm_id}` }, a.title)),
        h("td", {}, when(a.raised_at)), h("td", {}, t(`state.${a.state}`)),
        h("td", {}, a.occurrences === null ? "—" : String(a.occurrences)))))));
}

async function optional(path) {
  try {
    return await api("GET", path);
  } catch {
    return null;
  }
}

export function showAlarm(root, shell, alarmId) {
  let undraw = () => {};
  let stopped = false;
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
    const staff = detail.view === "staff" && ["admin", "expert"].includes(shell.me().role);
    const open = detail.alarm.resolution === null;
    const [history, faults, suggestions] = await Promise.all([
      shell.me().role === "engineer" ? null
        : optional(`/v1/alarms?machine_id=${encodeURIComponent(detail.alarm.machine_id)}&limit=100`),
      staff ? optional("/v1/faults") : null,
      staff && open ? optional(`/v1/alarms/${alarmId}/suggestions`) : null,
    ]);
    if (stopped) return;
    undraw();
    detail.ticked = new Set();
    const diagnosis = diagnosisSection(detail.diagnosis, detail.alarm.title, detail.ticked,
      () => detail.onTick && detail.onTick());
    const charts = h("section", { "aria-labelledby": "signals" }, h("h2", { id: "signals" }, t("alarm.signals")));
    root.replaceChildren(h("div", { class: "alarm" },
      back(),
      h("h1", {}, t("alarm.heading", { id: detail.alarm.alarm_id, title: detail.alarm.title })),
      facts(detail.alarm, faults || []), outcome(detail.alarm),
      staff ? actions(detail, faults || [], load) : null,
      staff && open ? dispatchSection(detail, suggestions, load) : h("div", { id: "actions-result" }),
      diagnosis, charts, incident(detail), history ? dtcHistory(history.alarms) : null));
    undraw = drawSignals(charts, detail);
  }
  load();
  return () => { stopped = true; undraw(); };
}
