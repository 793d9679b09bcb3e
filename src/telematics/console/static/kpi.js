// The service KPI and satisfaction dashboards, by month, quarter or year, for every region or
// one (both choices are kept in the address): the rates over the periods as a uPlot chart, the satisfaction index with
// its bootstrap 95 % interval as another, and tables for the figures themselves, overall per
// period and by region and engineer for the latest period with orders.

import { api, currentLanguage, h, problem, t } from "./api.js";

const PERIODS = ["month", "quarter", "year"];
const RATES = [
  ["remote_resolution_rate", "#1f6feb"], ["callback_compliance", "#8250df"],
  ["contacted_within_15_min", "#bf3989"], ["arrival_within_deadline", "#1a7f37"],
  ["completion_within_48_h", "#9a6700"], ["first_time_fix_rate", "#cf222e"],
];

function fromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return {
    period: PERIODS.includes(query.get("period")) ? query.get("period") : "month",
    region: (query.get("region") || "").slice(0, 100),
  };
}

function address(period, region) {
  const query = new URLSearchParams({ period });
  if (region) query.set("region", region);
  return `#/kpi?${query}`;
}

export function periodLabel(iso, period) {
  const d = new Date(iso);
  const year = d.getUTCFullYear();
  const month = d.getUTCMonth() + 1;
  if (period === "year") return t("kpi.label_year", { year });
  if (period === "quarter") return t("kpi.label_quarter", { year, q: Math.floor((month - 1) / 3) + 1 });
  return t("kpi.label_month", { year, m: month, mm: String(month).padStart(2, "0") });
}

function pct(rate) {
  if (rate.value === null) return "—";
  return `${(rate.value * 100).toFixed(1)}% (${rate.numerator}/${rate.denominator})`;
}

function minutes(spread) {
  if (spread.n === 0 || spread.mean === null) return "—";
  return t("kpi.minutes", { mean: Math.round(spread.mean), p90: spread.p90 === null ? "—" : Math.round(spread.p90) });
}

function kpiCells(k) {
  return [h("td", {}, String(k.orders)), ...RATES.map(([key]) => h("td", {}, pct(k[key]))),
    h("td", {}, minutes(k.response_min)), h("td", {}, minutes(k.repair_min))];
}

function kpiHead(first) {
  return h("thead", {}, h("tr", {}, [first, t("kpi.orders"), ...RATES.map(([key]) => t(`kpi.${key}`)),
    t("kpi.response"), t("kpi.repair")].map((x) => h("th", { scope: "col" }, x))));
}

function chart(root, label, x, series, yLabel, range) {
  const has = series.some((s) => s.values.some((v) => v !== null));
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, label));
  root.append(figure);
  if (!has || !window.uPlot) {
    figure.append(h("p", { class: "hint" }, t("kpi.no_figures")));
    return null;
  }
  const plot = h("div", { role: "img", "aria-label": label });
  figure.append(plot);
  const width = Math.max(320, Math.min(root.clientWidth || 900, 1100));
  return new window.uPlot({
    width, height: 240,
    scales: { x: { time: true }, y: range ? { range } : {} },
    series: [{ label: t("kpi.period") }, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: 2, dash: s.dash, points: { show: true, size: 6 }, spanGaps: true,
    }))],
    axes: [{ values: (u, ticks) => ticks.map((v) => new Date(v * 1000).toLocaleDateString(currentLanguage(), { year: "numeric", month: "short", timeZone: "UTC" })) },
      { label: yLabel }],
  }, [x, ...series.map((s) => s.values)], plot);
}

function breakdown(title, first, rows, name) {
  if (!rows.length) return null;
  return h("section", {}, h("h3", {}, title),
    h("table", { class: "kpi" }, kpiHead(first),
      h("tbody", {}, rows.map((r) => h("tr", {}, h("th", { scope: "row" }, name(r)), kpiCells(r))))));
}

export function showKpi(root) {
  const { period, region } = fromAddress();
  const switcher = h("div", { class: "switch", role: "group", "aria-label": t("kpi.period") },
    PERIODS.map((p) => h("button", { type: "button", "aria-pressed": p === period ? "true" : "false",
      onclick: () => { location.hash = address(p, region); } }, t(`kpi.by_${p}`))));
  const regions = h("div", { class: "filters" });
  const note = h("div");
  const charts = h("div");
  const tables = h("div");
  root.append(h("h1", {}, t("kpi.heading")), switcher, regions, note, charts, tables);
  let stopped = false;
  let plots = [];
  (async () => {
    let kpis;
    let satisfaction;
    try {
      const scope = new URLSearchParams({ period });
      if (region) scope.set("region", region);
      [kpis, satisfaction] = await Promise.all([
        api("GET", `/v1/service/kpis?${scope}`), api("GET", `/v1/satisfaction?${scope}`)]);
    } catch (err) {
      problem(note, err);
      return;
    }
    if (stopped) return;
    const known = new Set(kpis.periods.flatMap((p) => p.regions.map((r) => r.region)).filter(Boolean));
    if (region) known.add(region);
    const select = h("select", { id: "kpi-region", onchange: (e) => { location.hash = address(period, e.target.value); } },
      h("option", { value: "" }, t("kpi.all_regions")),
      [...known].sort().map((r) => h("option", { value: r, selected: r === region }, r)));
    regions.replaceChildren(h("label", { for: "kpi-region" }, t("kpi.region"), " ", select));
    const x = kpis.periods.map((p) => Date.parse(p.period_start) / 1000);
    const rateSeries = RATES.map(([key, color]) => ({ label: t(`kpi.${key}`), color,
      values: kpis.periods.map((p) => (p.overall[key].value === null ? null : p.overall[key].value * 100)) }));
    const sx = satisfaction.periods.map((p) => Date.parse(p.period_start) / 1000);
    const ci = (i) => satisfaction.periods.map((p) => (p.index_ci_95 ? p.index_ci_95[i] : null));
    plots = [
      chart(charts, t("kpi.rates_chart"), x, rateSeries, "%", [0, 100]),
      chart(charts, t("kpi.satisfaction_chart"), sx, [
        { label: t("kpi.index"), color: "#1f6feb", values: satisfaction.periods.map((p) => p.index) },
        { label: t("kpi.ci_low"), color: "#57606a", dash: [4, 4], values: ci(0) },
        { label: t("kpi.ci_high"), color: "#57606a", dash: [4, 4], values: ci(1) }], "0–100", [0, 100]),
    ].filter(Boolean);
    const latest = [...kpis.periods].reverse().find((p) => p.overall.orders > 0);
    tables.append(
      h("section", { "aria-labelledby": "kpi-overall" }, h("h2", { id: "kpi-overall" }, t("kpi.overall")),
        h("table", { class: "kpi" }, kpiHead(t("kpi.period")),
          h("tbody", {}, [...kpis.periods].reverse().map((p) => h("tr", {},
            h("th", { scope: "row" }, periodLabel(p.period_start, period)), kpiCells(p.overall)))))),
      latest ? h("section", { "aria-labelledby": "kpi-latest" },
        h("h2", { id: "kpi-latest" }, t("kpi.latest", { period: periodLabel(latest.period_start, period) })),
        breakdown(t("kpi.by_region"), t("kpi.region"), latest.regions, (r) => r.region || t("kpi.no_region")),
        breakdown(t("kpi.by_engineer"), t("board.engineer"), latest.engineers, (r) => r.engineer_id)) : null,
      h("section", { "aria-labelledby": "kpi-satisfaction" }, h("h2", { id: "kpi-satisfaction" }, t("kpi.satisfaction")),
        h("table", { class: "kpi" },
          h("thead", {}, h("tr", {}, [t("kpi.period"), t("kpi.answers"), t("kpi.index"), t("kpi.ci")]
            .map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, [...satisfaction.periods].reverse().map((p) => h("tr", {},
            h("th", { scope: "row" }, periodLabel(p.period_start, period)),
            h("td", {}, String(p.n)),
            h("td", {}, p.index === null ? (p.n < satisfaction.min_n
              ? t("kpi.too_few", { n: p.n, min: satisfaction.min_n }) : t("kpi.no_index")) : p.index.toFixed(1)),
            h("td", {}, p.index_ci_95 ? `${p.index_ci_95[0].toFixed(1)} – ${p.index_ci_95[1].toFixed(1)}` : "—")))))));
  })();
  return () => { stopped = true; plots.forEach((p) => p.destroy()); };
}
