// An engineer's route drawn from the data alone: start (the last reported position, when there
// is one), the pickup warehouse and the site on a plain equirectangular projection, as SVG.
// No map tiles, nothing from another host.

const NS = "http://www.w3.org/2000/svg";
const W = 320;
const H = 160;
const PAD = 18;

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// points: [{lat, lon, label, kind}] in travel order.
export function routeSvg(points, title) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "route", role: "img", "aria-label": title });
  svg.append(el("title", {}, title));
  if (points.length === 0) return svg;
  const midLat = points.reduce((s, p) => s + p.lat, 0) / points.length;
  const kx = Math.cos((midLat * Math.PI) / 180);
  const xs = points.map((p) => p.lon * kx);
  const ys = points.map((p) => p.lat);
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-4);
  const scale = Math.min(W - 2 * PAD, H - 2 * PAD) / span;
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
  const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const at = (i) => [W / 2 + (xs[i] - cx) * scale, H / 2 - (ys[i] - cy) * scale];
  svg.append(el("polyline", {
    points: points.map((_, i) => at(i).join(",")).join(" "),
    fill: "none", stroke: "#1f6feb", "stroke-width": 2, "stroke-dasharray": "5 3",
  }));
  points.forEach((p, i) => {
    const [x, y] = at(i);
    svg.append(el("circle", { cx: x, cy: y, r: p.kind === "site" ? 7 : 5, class: `stop ${p.kind}` }));
    svg.append(el("text", { x: x + 9, y: y + 4, class: "stop-label" }, p.label));
  });
  return svg;
}
