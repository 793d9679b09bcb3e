// A machine's work summaries as uPlot charts: hours per bucket (working and idle side by side),
// fuel used in litres, and utilisation in % of the shift. Time on x (the bucket's start), the
// unit on y. Drag across a chart to zoom, double-click to zoom out; the cursors move together.

import { h, t } from "./api.js";

const WORKING = "#1f6feb";
const IDLE = "#9a6700";
const FUEL = "#1a7f37";
const UTIL = "#8250df";

function bars(align) {
  return window.uPlot.paths.bars({ size: [0.38, 60], align });
}

function chart(root, { id, label, unit, series, data, width, span, sync }) {
  const figure = h("figure", { class: "chart", id });
  figure.append(h("figcaption", {}, label));
  const plot = h("div", { role: "img", "aria-label": label });
  figure.append(plot);
  root.append(figure);
  return new window.uPlot({
    width,
    height: 180,
    cursor: { sync: { key: sync.key } },
    scales: { x: { time: true, range: (u, min, max) => [min - span / 2, max + span / 2] } },
    series: [{ label: t("time") }, ...series],
    axes: [{}, { label: unit }],
    legend: { show: true },
  }, data, plot);
}

// buckets: the API's summary buckets, oldest first. Returns a function that removes the charts.
export function drawSummary(root, machineId, buckets) {
  if (!window.uPlot || buckets.length === 0) {
    root.append(h("p", {}, t("cust.no_summary")));
    return () => {};
  }
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);
  const span = buckets.length > 1 ? (xs[xs.length - 1] - xs[0]) / (xs.length - 1) : 86400;
  const mid = xs.map((x, i) => x + (Date.parse(buckets[i].end) / 1000 - x) / 2);
  const width = Math.max(300, Math.min(root.clientWidth || 900, 1100));
  const sync = window.uPlot.sync(`summary-${machineId}`);
  const value = (v) => (v === null || v === undefined ? null : v);
  const charts = [
    chart(root, {
      id: "chart-hours", label: t("cust.chart_hours"), unit: t("cust.unit_h"), width, span, sync,
      series: [
        { label: t("cust.working"), fill: WORKING, stroke: WORKING, paths: bars(-1), points: { show: false } },
        { label: t("cust.idle"), fill: IDLE, stroke: IDLE, paths: bars(1), points: { show: false } },
      ],
      data: [mid, buckets.map((b) => b.working_hours), buckets.map((b) => b.idle_hours)],
    }),
    buckets.every((b) => b.fuel_used_l === null) ? null : chart(root, {
      id: "chart-fuel", label: t("cust.chart_fuel"), unit: t("cust.unit_l"), width, span, sync,
      series: [{ label: t("cust.fuel_used"), fill: FUEL, stroke: FUEL, paths: bars(0), points: { show: false } }],
      data: [mid, buckets.map((b) => value(b.fuel_used_l))],
    }),
    chart(root, {
      id: "chart-util", label: t("cust.chart_util"), unit: "%", width, span, sync,
      series: [{ label: t("cust.utilisation"), stroke: UTIL, width: 2, points: { show: true } }],
      data: [mid, buckets.map((b) => value(b.utilisation_pct))],
    }),
  ];
  // Litres need the tank size (machines.fuel_tank_l): without it there are no fuel figures.
  if (charts[1] === null) root.append(h("p", { class: "hint", id: "chart-fuel" }, t("cust.no_fuel")));
  root.append(h("p", { class: "hint" }, t("alarm.chart_hint")));
  return () => charts.forEach((c) => c && c.destroy());
}
