// Fleet and engineers on a map drawn from the data alone: an SVG, a plain equirectangular
// projection (x = longitude × cos of the mean latitude, y = latitude) fitted to the points,
// machines' site circles at their registered radius, machines coloured by status (open alarm,
// online, offline), engineers by availability, warehouses; each point has a tooltip and a
// machine links to its alarms. Nothing is loaded from another host. Only when the operator set
// TELEMATICS_CONSOLE_TILE_URL are tiles drawn underneath, and then the projection is the
// tiles' own Web Mercator so points land on them. Choosing a customer (kept in the address)
// fits the map to its machines and the engineers and warehouses within NEAR_KM of them.

import { api, h, problem, t, when } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000;
const H = 560;
const PAD = 30;
const EARTH_KM = 40075.016686;
const MAX_TILES = 64;
const NEAR_KM = 150;

function haversineKm(a, b) {
  const dLat = (b.lat - a.lat) * RAD;
  const dLon = (b.lon - a.lon) * RAD;
  const x = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * RAD) * Math.cos(b.lat * RAD) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.sqrt(x));
}

function customerFromAddress() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return (query.get("customer_id") || "").slice(0, 100);
}

// With a customer chosen: its machines, and what lies near them.
function scoped(found, customer) {
  if (!customer) return found;
  const mine = found.filter((p) => p.kind === "machine" && p.item.customer_id === customer);
  return found.filter((p) => (p.kind === "machine" ? p.item.customer_id === customer
    : mine.some((m) => haversineKm(m, p) <= NEAR_KM)));
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const RAD = Math.PI / 180;

// World coordinates of a position (y grows southwards) and km per world unit at latitude lat.
function projection(mercator, meanLat) {
  if (mercator) {
    return {
      at: (lat, lon) => [(lon + 180) / 360,
        (1 - Math.log(Math.tan(lat * RAD) + 1 / Math.cos(lat * RAD)) / Math.PI) / 2],
      kmPerUnit: (lat) => EARTH_KM * Math.cos(lat * RAD),
    };
  }
  const k = Math.cos(meanLat * RAD);
  return { at: (lat, lon) => [lon * k, -lat], kmPerUnit: () => EARTH_KM / 360 };
}

function machineStatus(m) {
  if (m.open_alarms > 0) return "alarm";
  return m.online ? "online" : "offline";
}

function engineerStatus(e) {
  return ["available", "busy", "off"].includes(e.status) ? e.status : "off";
}

function places(machines, engineers, warehouses) {
  // Drawn in this order: warehouses, engineers, then machines on top (they are the links).
  const out = warehouses.map((w) => ({ kind: "warehouse", lat: w.lat, lon: w.lon, item: w, status: "warehouse" }));
  for (const e of engineers) {
    const lat = e.last_lat ?? e.home_lat;
    const lon = e.last_lon ?? e.home_lon;
    if (lat !== null && lat !== undefined && lon !== null && lon !== undefined) {
      out.push({ kind: "engineer", lat, lon, item: e, status: engineerStatus(e) });
    }
  }
  for (const m of machines) {
    const at = m.position || m.site;
    if (at) out.push({ kind: "machine", lat: at.lat, lon: at.lon, item: m, status: machineStatus(m) });
  }
  return out;
}

// Scale and offset that fit every point and site circle into the drawing, north up.
function fit(points, sites, proj) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  const grow = (x, y, r = 0) => { x0 = Math.min(x0, x - r); x1 = Math.max(x1, x + r); y0 = Math.min(y0, y - r); y1 = Math.max(y1, y + r); };
  for (const p of points) grow(...proj.at(p.lat, p.lon));
  for (const site of sites) grow(...proj.at(site.lat, site.lon), site.radius_m / 1000 / proj.kmPerUnit(site.lat));
  const minSpan = 1 / proj.kmPerUnit(0); // at least about a kilometre across
  const spanX = Math.max(x1 - x0, minSpan);
  const spanY = Math.max(y1 - y0, minSpan);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  return { scale, toPx: ([x, y]) => [W / 2 + (x - cx) * scale, H / 2 + (y - cy) * scale], cx, cy };
}

function tiles(url, view) {
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(view.scale / 256))));
  const n = 2 ** z;
  const size = view.scale / n;
  const wx0 = view.cx - W / 2 / view.scale;
  const wy0 = view.cy - H / 2 / view.scale;
  const [i0, j0] = [Math.floor(wx0 * n), Math.max(0, Math.floor(wy0 * n))];
  const [i1, j1] = [Math.floor((wx0 + W / view.scale) * n), Math.min(n - 1, Math.floor((wy0 + H / view.scale) * n))];
  const out = [];
  for (let j = j0; j <= j1; j++) {
    for (let i = i0; i <= i1 && out.length < MAX_TILES; i++) {
      const x = ((i % n) + n) % n;
      const href = url.replace("{z}", z).replace("{x}", x).replace("{y}", j);
      const [px, py] = view.toPx([i / n, j / n]);
      out.push(s("image", { href, x: px, y: py, width: size + 0.5, height: size + 0.5, preserveAspectRatio: "none" }));
    }
  }
  return out;
}

function scaleBar(view, proj, lat) {
  const pxPerKm = view.scale / proj.kmPerUnit(lat);
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];
  const km = steps.find((k) => k * pxPerKm >= 80) || steps[steps.length - 1];
  const len = km * pxPerKm;
  return s("g", { class: "scalebar", transform: `translate(${PAD},${H - 14})` },
    s("line", { x1: 0, y1: 0, x2: len, y2: 0 }),
    s("text", { x: len + 6, y: 4 }, `${km} km`));
}

function point(p, view, proj, labels) {
  const [x, y] = view.toPx(proj.at(p.lat, p.lon));
  // Labels go left of points near the right edge, so they stay inside the drawing.
  const right = x < W - 140;
  const label = (text) => s("text", { x: right ? x + 10 : x - 10, y: y + 4, "text-anchor": right ? "start" : "end", "aria-hidden": "true" }, text);
  if (p.kind === "machine") {
    const m = p.item;
    const tip = [`${m.name ? `${m.name} ` : ""}${m.machine_id} (${m.model})`, t(`map.status.${p.status}`),
      t("map.last", { when: when(m.last_reading_at) }), t("map.open_alarms", { n: m.open_alarms })].join("\n");
    // The link is the dot alone; its label beside it lets clicks through.
    return s("g", { class: `pt machine ${p.status}` },
      s("a", { href: `#/alarms?machine_id=${encodeURIComponent(m.machine_id)}`, "aria-label": m.machine_id },
        s("title", {}, tip), s("circle", { cx: x, cy: y, r: 7 })),
      labels ? label(m.machine_id) : null);
  }
  if (p.kind === "engineer") {
    const e = p.item;
    const tip = [`${e.name} (${e.engineer_id})`, t(`map.engineer.${p.status}`),
      t("map.open_orders", { n: e.open_orders }), t("map.last", { when: when(e.last_seen_at) })].join("\n");
    return s("g", { role: "img", "aria-label": e.engineer_id, class: `pt engineer ${p.status}` },
      s("title", {}, tip),
      s("rect", { x: x - 6, y: y - 6, width: 12, height: 12, transform: `rotate(45 ${x} ${y})` }),
      labels ? label(e.engineer_id) : null);
  }
  const w = p.item;
  return s("g", { role: "img", "aria-label": w.warehouse_id, class: "pt warehouse" },
    s("title", {}, `${w.name} (${w.warehouse_id})`),
    s("path", { d: `M${x} ${y - 7} L${x + 7} ${y + 6} L${x - 7} ${y + 6} Z` }),
    labels ? label(w.warehouse_id) : null);
}

function legend() {
  const items = [["machine alarm", "map.status.alarm"], ["machine online", "map.status.online"],
    ["machine offline", "map.status.offline"], ["engineer available", "map.engineer.available"],
    ["engineer busy", "map.engineer.busy"], ["engineer off", "map.engineer.off"], ["warehouse", "map.warehouse"]];
  return h("ul", { class: "legend" }, items.map(([cls, key]) => h("li", {}, h("span", { class: `key ${cls}` }), t(key))));
}

export function showMap(root) {
  const customer = customerFromAddress();
  const holder = h("div", { class: "map" });
  const note = h("div");
  const summary = h("p", { class: "hint", role: "status" });
  const filters = h("div", { class: "filters" });
  root.append(h("h1", {}, t("map.heading")), filters, summary, note, holder, legend());
  let stopped = false;
  (async () => {
    let machines;
    let engineers;
    let warehouses;
    let config;
    try {
      [machines, engineers, warehouses, config] = await Promise.all([
        api("GET", "/v1/machines?limit=1000"), api("GET", "/v1/engineers"),
        api("GET", "/v1/warehouses"), api("GET", "/console/config")]);
    } catch (err) {
      problem(note, err);
      return;
    }
    if (stopped) return;
    const customers = [...new Set([...machines.machines.map((m) => m.customer_id), ...(customer ? [customer] : [])])].sort();
    const select = h("select", { id: "map-customer", onchange: (e) => {
      location.hash = e.target.value ? `#/map?customer_id=${encodeURIComponent(e.target.value)}` : "#/map";
    } }, h("option", { value: "" }, t("map.all")),
    customers.map((c) => h("option", { value: c, selected: c === customer }, c)));
    filters.replaceChildren(h("label", { for: "map-customer" }, t("map.customer"), " ", select));
    const found = scoped(places(machines.machines, engineers, warehouses), customer);
    const sites = machines.machines.filter((m) => m.site && (!customer || m.customer_id === customer)).map((m) => m.site);
    summary.textContent = t("map.summary", { machines: found.filter((p) => p.kind === "machine").length,
      engineers: found.filter((p) => p.kind === "engineer").length });
    if (found.length === 0) {
      note.append(h("p", {}, t("map.empty")));
      return;
    }
    const meanLat = found.reduce((sum, p) => sum + p.lat, 0) / found.length;
    const proj = projection(Boolean(config.tile_url), meanLat);
    const view = fit(found, sites, proj);
    const labels = found.length <= 40;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": t("map.heading"), class: "map-svg" },
      s("rect", { class: "sea", x: 0, y: 0, width: W, height: H }),
      config.tile_url ? s("g", { class: "tiles" }, tiles(config.tile_url, view)) : null,
      s("g", { class: "sites" }, sites.map((site) => {
        const [x, y] = view.toPx(proj.at(site.lat, site.lon));
        const r = (site.radius_m / 1000 / proj.kmPerUnit(site.lat)) * view.scale;
        return s("circle", { cx: x, cy: y, r: Math.max(r, 2) });
      })),
      s("g", { class: "points" }, found.map((p) => point(p, view, proj, labels))),
      scaleBar(view, proj, meanLat));
    holder.replaceChildren(svg);
    if (config.tile_url && config.tile_attribution) holder.append(h("p", { class: "hint" }, config.tile_attribution));
  })();
  return () => { stopped = true; };
}
