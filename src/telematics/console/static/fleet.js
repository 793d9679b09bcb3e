// The customer's fleet, from /v1/machines (which answers a customer with its own machines
// only): status, last reading, engine hours and open alarms.

import { api, h, problem, t, when } from "./api.js";

export function showFleet(root) {
  const body = h("tbody");
  const message = h("div");
  root.append(h("h1", {}, t("fleet.heading")), message,
    h("table", { class: "fleet" },
      h("thead", {}, h("tr", {}, [t("col.machine"), t("col.model"), t("fleet.status"), t("fleet.last"),
        t("fleet.hours"), t("fleet.open_alarms")].map((x) => h("th", { scope: "col" }, x)))),
      body));
  let stopped = false;
  (async () => {
    let page;
    try {
      page = await api("GET", "/v1/machines?limit=1000");
    } catch (err) {
      problem(message, err);
      return;
    }
    if (stopped) return;
    body.replaceChildren(...page.machines.map((m) => h("tr", {},
      h("td", {}, m.name ? `${m.name} (${m.machine_id})` : m.machine_id),
      h("td", {}, m.model),
      h("td", {}, h("span", { class: `badge ${m.online ? "online" : "offline"}` }, t(m.online ? "fleet.online" : "fleet.offline"))),
      h("td", {}, when(m.last_reading_at)),
      h("td", {}, m.engine_hours === null ? "—" : m.engine_hours.toFixed(1)),
      h("td", {}, m.open_alarms > 0 ? h("a", { href: "#/alarms?state=open" }, String(m.open_alarms)) : "0"))));
    if (page.machines.length === 0) message.append(h("p", {}, t("fleet.empty")));
  })();
  return () => { stopped = true; };
}
