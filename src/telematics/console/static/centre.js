// The control centre's pages beyond the alarm queue, and who reaches each: the dispatch board,
// the monitoring desk, the map and the KPI dashboards. The shell (app.js) asks here which links
// a role gets and which view an address shows, so the pages can grow without touching it.

import { t } from "./api.js";
import { showBoard } from "./board.js";
import { showDesk } from "./desk.js";
import { showKpi } from "./kpi.js";
import { showMap } from "./map.js";

export const CONTROL_CENTRE = ["admin", "expert", "monitor"];

// Address prefix -> [navigation string, view, roles]. The roles are those the API lets read
// what the page shows (the map's machines and engineers are the staff's; the desk, board and
// KPIs the monitoring desk's too).
const PAGES = [
  ["#/board", "nav.board", showBoard, ["admin", "expert", "monitor"]],
  ["#/desk", "nav.desk", showDesk, ["admin", "expert", "monitor"]],
  ["#/map", "nav.map", showMap, ["admin", "expert"]],
  ["#/kpi", "nav.kpi", showKpi, ["admin", "expert", "monitor"]],
];

export function controlCentreLinks(role) {
  return PAGES.filter(([, , , roles]) => roles.includes(role)).map(([href, key]) => [href, t(key)]);
}

export function controlCentreView(hash, role) {
  const found = PAGES.find(([href, , , roles]) => (hash === href || hash.startsWith(`${href}?`)) && roles.includes(role));
  return found ? found[2] : null;
}
