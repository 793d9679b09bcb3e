// The machine's signals around an alarm, one uPlot chart per signal with a shared cursor:
// time on x, the signal in its unit on y, the moment the alarm was raised drawn as a red
// line. Drag across a chart to zoom into a span; double-click to zoom back out.

import { h, t } from "./api.js";

const SIGNALS = [
  "engine_speed_rpm", "oil_pressure_kpa", "coolant_temp_c", "hydraulic_oil_temp_c",
  "fuel_level_pct", "battery_v", "engine_hours", "load_pct",
];
const MAX_CHARTS = 4;

function wanted(detail) {
  const named = [detail.alarm.signal, ...detail.diagnosis.signals].filter((s) => SIGNALS.includes(s));
  const present = SIGNALS.filter((s) => detail.readings.some((r) => r[s] !== null && r[s] !== undefined));
  const chosen = [...new Set(named)].filter((s) => present.includes(s));
  for (const s of present) if (chosen.length < Math.min(2, present.length) && !chosen.includes(s)) chosen.push(s);
  return chosen.slice(0, MAX_CHARTS);
}

function raisedLine(raisedS) {
  return {
    hooks: {
      draw: [(u) => {
        const x = u.valToPos(raisedS, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#c0392b";
        ctx.lineWidth = 2;
        ctx.setLineDash([6, 4]);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.restore();
      }],
    },
  };
}

export function drawSignals(root, detail) {
  const signals = wanted(detail);
  if (signals.length === 0 || !window.uPlot) {
    root.append(h("p", {}, t("alarm.no_readings")));
    return () => {};
  }
  const times = detail.readings.map((r) => Date.parse(r.ts) / 1000);
  const raisedS = Date.parse(detail.alarm.raised_at) / 1000;
  const sync = window.uPlot.sync(`alarm-${detail.alarm.alarm_id}`);
  const width = Math.max(320, Math.min(root.clientWidth || 900, 1100));
  const charts = signals.map((signal) => {
    const figure = h("figure", { class: "chart" });
    const label = t(`signal.${signal}`);
    figure.append(h("figcaption", {}, label));
    const plot = h("div", { role: "img", "aria-label": label });
    figure.append(plot);
    root.append(figure);
    const values = detail.readings.map((r) => (r[signal] === undefined ? null : r[signal]));
    return new window.uPlot({
      width,
      height: 200,
      cursor: { sync: { key: sync.key } },
      scales: { x: { time: true } },
      series: [{ label: t("time") }, { label, stroke: "#1f6feb", width: 2, spanGaps: false }],
      axes: [{}, { label }],
      plugins: [raisedLine(raisedS)],
    }, [times, values], plot);
  });
  root.append(h("p", { class: "hint" }, t("alarm.chart_hint")));
  return () => charts.forEach((c) => c.destroy());
}
