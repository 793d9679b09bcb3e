// The monitoring desk: the tasks the service-level timers made (callback checks, arrival and
// completion escalations, post-completion callbacks), oldest due first, each with whom to
// call, the engineer and where they are, and a form for what the call found.

import { api, fetched, h, problem, t, when } from "./api.js";

const KINDS = ["callback_check", "arrival_escalation", "completion_escalation", "post_completion_callback"];

function kindFromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return {
    kind: KINDS.includes(query.get("kind")) ? query.get("kind") : "",
    state: query.get("state") === "done" ? "done" : "open",
  };
}

function facts(task) {
  const rows = [
    [t("desk.due"), when(task.due_at)],
    [t("col.machine"), task.machine_id],
    [t("col.customer"), task.customer_id],
    [t("board.engineer"), task.engineer_id || "—"],
    [t("desk.planned_eta"), when(task.eta)],
  ];
  const tr = task.tracking;
  if (tr && tr.at) {
    rows.push([t("desk.position"), t("desk.position_at", { when: when(tr.at),
      km: tr.distance_km === null ? "—" : tr.distance_km.toFixed(1) })]);
    if (tr.eta) rows.push([t("desk.live_eta"), when(tr.eta)]);
  }
  if (task.notified_line) rows.push([t("alarm.line"), t(`alarm.line_${task.notified_line}`)]);
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function resultForm(task, done) {
  const id = task.task_id;
  const reached = h("input", { type: "checkbox", id: `reached-${id}` });
  const said = h("textarea", { id: `said-${id}`, rows: 2, maxlength: 4000 });
  const follow = h("textarea", { id: `follow-${id}`, rows: 2, maxlength: 4000 });
  const called = task.kind === "callback_check" ? h("select", { id: `called-${id}` },
    h("option", { value: "" }, t("desk.called_unknown")),
    h("option", { value: "yes" }, t("yes")), h("option", { value: "no" }, t("no"))) : null;
  const message = h("div", { role: "status" });
  const submit = h("button", { type: "submit" }, t("desk.record"));
  return h("form", { class: "desk-result", onsubmit: async (event) => {
    event.preventDefault();
    message.replaceChildren();
    const body = { reached: reached.checked, said: said.value, follow_up: follow.value };
    if (called && called.value) body.engineer_called = called.value === "yes";
    try {
      await api("POST", `/v1/desk/tasks/${id}/result`, body);
      done();
    } catch (err) {
      problem(message, err);
    }
  } },
  h("label", {}, reached, " ", t("desk.reached")),
  called ? h("label", { for: `called-${id}` }, t("desk.engineer_called"), " ", called) : null,
  h("label", { for: `said-${id}` }, t("desk.said")), said,
  h("label", { for: `follow-${id}` }, t("desk.follow_up")), follow,
  submit, message);
}

function outcome(task) {
  const r = task.result;
  return h("div", { class: "desk-done" },
    h("p", { role: "status" }, t(r.reached ? "desk.done_reached" : "desk.done_unreached", { who: r.done_by, when: when(r.done_at) })),
    r.service_failure ? h("p", { class: "error" }, t("desk.service_failure")) : null,
    r.said ? h("p", {}, t("desk.said"), ": ", r.said) : null,
    r.follow_up ? h("p", {}, t("desk.follow_up"), ": ", r.follow_up) : null);
}

export function showDesk(root) {
  const chosen = kindFromAddress();
  const list = h("div", { class: "tasks" });
  const note = h("div");
  const readdress = () => {
    const query = new URLSearchParams(Object.entries(chosen).filter(([k, v]) => v && !(k === "state" && v === "open")));
    history.replaceState(null, "", `#/desk${query.toString() ? `?${query}` : ""}`);
    load();
  };
  const kind = h("select", { id: "desk-kind", onchange: (e) => { chosen.kind = e.target.value; readdress(); } },
    h("option", { value: "" }, t("filter.any")),
    KINDS.map((k) => h("option", { value: k, selected: k === chosen.kind }, t(`desk.kind.${k}`))));
  const state = h("select", { id: "desk-state", onchange: (e) => { chosen.state = e.target.value; readdress(); } },
    ["open", "done"].map((s) => h("option", { value: s, selected: s === chosen.state }, t(`desk.state.${s}`))));
  root.append(h("h1", {}, t("desk.heading")),
    h("div", { class: "filters" },
      h("label", { for: "desk-kind" }, t("desk.kind"), " ", kind),
      h("label", { for: "desk-state" }, t("desk.tasks"), " ", state)),
    note, list);
  let stopped = false;

  async function load() {
    const query = new URLSearchParams({ state: chosen.state, limit: "200" });
    if (chosen.kind) query.set("kind", chosen.kind);
    const tasks = await fetched(note, api("GET", `/v1/desk/tasks?${query}`));
    if (tasks === null || stopped) return;
    list.replaceChildren(...tasks.map((task) => h("article", {
      class: `task${task.escalation ? " escalation" : ""}`, "aria-labelledby": `task-${task.task_id}` },
    h("h2", { id: `task-${task.task_id}` }, t(`desk.kind.${task.kind}`), " · ", t("order.heading", { id: task.order_id })),
    h("p", { class: "ask" }, t(`desk.ask.${task.kind}`, { customer: task.customer_id, engineer: task.engineer_id || "—" })),
    h("p", {}, h("span", { class: `badge sev-${task.severity}` }, t(`severity.${task.severity}`)), " ",
      t(`order.state.${task.order_state}`)),
    facts(task),
    task.result ? outcome(task) : resultForm(task, load))));
    if (tasks.length === 0) list.append(h("p", {}, t("desk.empty")));
  }
  load();
  return () => { stopped = true; };
}
