// The machine's signals around an alarm, one uPlot chart per signal with a shared cursor:
// time on x, the signal in its unit on y, the moment the alarm was raised drawn as a red
// line, and the rule book's limits on that signal (from the alarm's `limits`: raise limits
// dashed red, clear limits dotted amber; a curve over another signal, such as the minimum oil
// pressure over engine speed, is evaluated at each reading). Drag across a chart to zoom into a
// span; double-click to zoom back out.

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

// A curve limit at x: linear between its points, held flat beyond the ends (as the rule does).
function curveAt(xs, ys, x) {
  if (x === null || x === undefined || Number.isNaN(x)) return null;
  if (x <= xs[0]) return ys[0];
  for (let i = 1; i < xs.length; i++) {
    if (x <= xs[i]) return ys[i - 1] + ((ys[i] - ys[i - 1]) * (x - xs[i - 1])) / (xs[i] - xs[i - 1]);
  }
  return ys[ys.length - 1];
}

function limitSeries(detail, signal) {
  return (detail.limits || []).filter((l) => l.signal === signal).map((limit) => {
    const values = detail.readings.map((r) => (limit.value !== null ? limit.value
      : curveAt(limit.xs, limit.ys, r[limit.over])));
    const when = limit.condition ? ` (${t(`alarm.limit_when_${limit.condition}`)})` : "";
    const raise = limit.edge === "raise";
    return {
      values,
      series: {
        label: t(raise ? "alarm.limit_raise" : "alarm.limit_clear") + when,
        stroke: raise ? "#b42318" : "#b54708",
        width: 1.5,
        dash: raise ? [6, 4] : [2, 3],
        spanGaps: limit.value !== null,
        points: { show: false },
      },
    };
  });
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
    const limits = limitSeries(detail, signal);
    return new window.uPlot({
      width,
      height: 200,
      cursor: { sync: { key: sync.key } },
      scales: { x: { time: true } },
      series: [{ label: t("time") }, { label, stroke: "#1f6feb", width: 2, spanGaps: false },
        ...limits.map((l) => l.series)],
      axes: [{}, { label }],
      plugins: [raisedLine(raisedS)],
    }, [times, values, ...limits.map((l) => l.values)], plot);
  });
  root.append(h("p", { class: "hint" }, t("alarm.chart_hint")));
  return () => charts.forEach((c) => c.destroy());
}
