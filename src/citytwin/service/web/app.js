// citytwin operations center: sign-in, a map drawn from the workspace's own layers (vector tiles),
// economy, space, live twin and catalog views. Plain ES module; MapLibre GL JS and ECharts are the
// globals `maplibregl` and `echarts` loaded from vendor/ (copied from npm by scripts/setup.sh).
// Every request goes to the server that served this page (no CDN, fonts, glyphs or sprites).

/* global maplibregl, echarts */

const S = {
  token: null, info: null, lang: "en", dict: {}, map: null, view: "map",
  collections: [], data: {}, charts: {}, alerts: new Map(), stream: null, mapReady: null,
};
window.citytwin = S; // for the browser tests and the console
// helpers shared with participation.js (a module of its own, see index.html)
Object.assign(S, { api, esc, t, table, setOverlay, fitGeojson, legend });

const ORIGIN = window.location.origin;

// ---- i18n ------------------------------------------------------------------------------------
function t(key, vars) {
  let s = S.dict[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

async function setLang(lang) {
  const r = await fetch(`i18n/${lang}.json`);
  S.dict = await r.json();
  S.lang = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.getElementById("lang").value = lang;
  localStorage.setItem("citytwin.lang", lang);
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.title = t("title");
  if (S.info) renderView(S.view);
}

// ---- API -------------------------------------------------------------------------------------
async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts = { ...opts, body: JSON.stringify(opts.json) };
  }
  const r = await fetch(path, { ...opts, headers });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(detail);
    err.status = r.status;
    throw err;
  }
  return opts.raw ? r : r.json();
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}

function table(rows, cols) {
  if (!rows || !rows.length) return `<p class="hint">—</p>`;
  const head = cols.map(([, label]) => `<th>${esc(label)}</th>`).join("");
  const body = rows.map((r) => `<tr>${cols.map(([k]) => `<td>${esc(fmt(r[k]))}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

// ---- sign-in ---------------------------------------------------------------------------------
async function login(user, token) {
  S.token = token;
  try {
    S.info = await api("/auth/login", { method: "POST", json: { user, token } });
  } catch (e) {
    S.token = null;
    throw e;
  }
  sessionStorage.setItem("citytwin.auth", JSON.stringify({ user, token }));
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("tabs").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = `${S.info.user} · ${S.info.role}`;
  document.querySelector('[data-view="twin"]').hidden = !S.info.twin.read;
  await initMap();
  await window.citytwinParticipation?.onLogin();
  if (S.info.twin.read) startAlertStream();
  // a tab the user chose while the map and the participation data were still loading stays chosen
  showView(S.view || "map");
}

function signOut() {
  sessionStorage.removeItem("citytwin.auth");
  if (S.stream) S.stream.abort();
  window.location.reload();
}

// ---- map -------------------------------------------------------------------------------------
const SCHEMA_STYLE = {
  land_use: { color: "#bfe0b4", order: 1 },
  admin_boundary: { color: "#9aa9c7", order: 0 },
  building: { color: "#c4ae8f", order: 2 },
  street_network: { color: "#7f8794", order: 3 },
  poi: { color: "#d9534f", order: 4 },
  admin_unit: { color: "#6d6d6d", order: 5 },
};
const HIDDEN_BY_DEFAULT = new Set(["admin_unit"]);
// derived datasets (analysis results) and point sets of a whole country start switched off
const hiddenByDefault = (c) => HIDDEN_BY_DEFAULT.has(c.schema) || c.kind === "derived";

function layerIds(id) {
  return [`${id}-fill`, `${id}-line`, `${id}-point`];
}

async function initMap() {
  const res = await api("/collections");
  S.collections = res.collections.filter((c) => c.geometry);
  S.collections.sort((a, b) => (SCHEMA_STYLE[a.schema]?.order ?? 6) - (SCHEMA_STYLE[b.schema]?.order ?? 6));
  const style = {
    version: 8,
    sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#eef1f4" } }],
  };
  const polys = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
  const lines = ["match", ["geometry-type"], ["LineString", "MultiLineString"], true, false];
  const points = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];
  for (const c of S.collections) {
    const color = SCHEMA_STYLE[c.schema]?.color ?? "#5b7db1";
    const bbox = c.extent?.spatial?.bbox?.[0];
    const src = {
      type: "vector", tiles: [`${ORIGIN}/tiles/${encodeURIComponent(c.id)}/{z}/{x}/{y}.mvt`],
      minzoom: 0, maxzoom: 16,
    };
    if (bbox) src.bounds = bbox.map((v, i) => Math.max(Math.min(v, i % 2 ? 85 : 180), i % 2 ? -85 : -180));
    style.sources[c.id] = src;
    const vis = hiddenByDefault(c) ? "none" : "visible";
    const base = { source: c.id, "source-layer": c.id, layout: { visibility: vis } };
    style.layers.push({ ...base, id: `${c.id}-fill`, type: "fill", filter: polys,
      paint: { "fill-color": color, "fill-opacity": c.schema === "admin_boundary" ? 0.25 : c.schema === "poi" ? 0.3 : 0.7,
        "fill-outline-color": "#667" } });
    style.layers.push({ ...base, id: `${c.id}-line`, type: "line", filter: lines,
      paint: { "line-color": color, "line-width": c.schema === "street_network" ? 1.4 : 1 } });
    style.layers.push({ ...base, id: `${c.id}-point`, type: "circle", filter: points,
      paint: { "circle-color": color, "circle-radius": 3, "circle-stroke-color": "#fff", "circle-stroke-width": 0.5 } });
  }
  const first = S.collections.find((c) => c.schema === "street_network") || S.collections[0];
  const bb = first?.extent?.spatial?.bbox?.[0] || [24.93, 60.16, 24.96, 60.18];
  S.map = new maplibregl.Map({
    container: "map", style, attributionControl: false,
    bounds: [[bb[0], bb[1]], [bb[2], bb[3]]],
    transformRequest: (url) => (url.startsWith(ORIGIN) ? { url, headers: { Authorization: `Bearer ${S.token}` } } : { url }),
  });
  S.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  S.mapReady = new Promise((resolve) => S.map.on("load", resolve));
  S.map.on("click", onMapClick);
  renderLayerPanel();
  await S.mapReady;
}

function renderLayerPanel() {
  const list = document.getElementById("layer-list");
  list.innerHTML = "";
  for (const c of S.collections) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.layer = c.id;
    box.checked = !hiddenByDefault(c);
    box.addEventListener("change", () => {
      for (const id of layerIds(c.id)) S.map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
    });
    const sw = `<span class="swatch" style="background:${SCHEMA_STYLE[c.schema]?.color ?? "#5b7db1"}"></span>`;
    label.append(box);
    label.insertAdjacentHTML("beforeend",
      ` ${sw}<span class="name" title="${esc(c.id)}">${esc(c.id)}</span> <span class="cls">${esc(c.classification)}</span>`);
    list.append(label);
  }
}

function onMapClick(ev) {
  const econ = S.map.getLayer("econ-cities-fill")
    ? S.map.queryRenderedFeatures(ev.point, { layers: ["econ-cities-fill"] }) : [];
  if (econ.length) {
    showCity(econ[0].properties.city);
    return;
  }
  const feats = S.map.queryRenderedFeatures(ev.point);
  const f = feats.find((x) => x.source && S.collections.some((c) => c.id === x.source));
  const box = document.getElementById("feature-info");
  if (!f) { box.innerHTML = ""; return; }
  const rows = Object.entries(f.properties).slice(0, 20).map(([k, v]) => ({ k, v }));
  box.innerHTML = `<h3>${esc(f.source)}</h3>` + table(rows, [["k", ""], ["v", ""]]);
}

function setOverlay(id, data, layers) {
  const src = S.map.getSource(id);
  if (src) src.setData(data);
  else {
    S.map.addSource(id, { type: "geojson", data });
    for (const l of layers) S.map.addLayer({ source: id, ...l });
  }
}

function fitGeojson(gj, pad = 40) {
  const b = new maplibregl.LngLatBounds();
  const walk = (c) => (typeof c[0] === "number" ? b.extend(c) : c.forEach(walk));
  for (const f of gj.features) walk(f.geometry.coordinates);
  if (!b.isEmpty()) S.map.fitBounds(b, { padding: pad, duration: 0, maxZoom: 15 });
}

function legend(html) {
  document.getElementById("map-legend").innerHTML = html;
}

// ---- views -----------------------------------------------------------------------------------
function chart(id) {
  const el = document.getElementById(id);
  let c = S.charts[id];
  if (c && c.getDom() !== el) { c.dispose(); c = null; }
  if (!c) { c = echarts.init(el, null, { renderer: "canvas" }); S.charts[id] = c; }
  return c;
}

async function viewData(view, force = false) {
  if (!S.data[view] || force) S.data[view] = await api(`/views/${view}`);
  return S.data[view];
}

function showView(view) {
  S.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  document.getElementById("reports").hidden = view === "map" || view === "participation";
  for (const id of ["econ-cities-fill", "econ-cities-line", "space-centers-line", "twin-stations",
    "twin-scenario-edges", "twin-scenario-detectors"]) {
    if (S.map?.getLayer(id)) S.map.setLayoutProperty(id, "visibility", id.startsWith(view === "economy" ? "econ" : view) ? "visible" : "none");
  }
  legend("");
  renderView(view, true).catch(showError);
  setTimeout(() => { for (const c of Object.values(S.charts)) c.resize(); }, 0);
}

function showError(e) {
  const box = document.getElementById("report-status");
  box.textContent = String(e.message || e);
}

async function renderView(view, move = false) {
  if (view === "economy") return renderEconomy(move);
  if (view === "space") return renderSpace(move);
  if (view === "twin") return renderTwin(move);
  if (view === "catalog") return renderCatalog();
  if (view === "participation") return window.citytwinParticipation?.render(move);
  return undefined;
}

// -- economy --
function cityLabel(r) {
  return S.lang === "zh" ? r.city : `${r.city} ${r.city_en}`;
}

const SCORE_COLORS = ["#fde725", "#5ec962", "#21918c", "#3b528b", "#440154"];

async function renderEconomy(move) {
  const d = await viewData("economy");
  const rows = d.cities.rows;
  document.getElementById("economy-source").textContent = d.cities.source;
  if (d.cities.geojson) {
    const scores = d.cities.geojson.features.map((f) => f.properties.de_score);
    const lo = Math.min(...scores), hi = Math.max(...scores);
    const stops = [];
    SCORE_COLORS.forEach((c, i) => { stops.push(lo + (hi - lo) * (i / (SCORE_COLORS.length - 1)) + i * 1e-9, c); });
    setOverlay("econ-cities", d.cities.geojson, [
      { id: "econ-cities-fill", type: "fill", paint: { "fill-color": ["interpolate", ["linear"], ["get", "de_score"], ...stops], "fill-opacity": 0.85 } },
      { id: "econ-cities-line", type: "line", paint: { "line-color": "#222", "line-width": 1 } },
    ]);
    if (move) fitGeojson(d.cities.geojson, 60);
    legend(`${esc(t("economy.legend"))}: ${SCORE_COLORS.map((c) => `<span class="swatch" style="background:${c}"></span>`).join("")} ${fmt(lo, 1)}–${fmt(hi, 1)}`);
  }
  const sc = chart("chart-rankgap");
  sc.setOption({ animation: false,
    // room on the right for the labels of the last cities; labels that would overlap are hidden (tooltip keeps them)
    grid: { left: 50, right: 90, top: 20, bottom: 40 },
    tooltip: { formatter: (p) => `${esc(p.data.name)}<br>${esc(t("economy.gdprank"))} ${p.data.value[0]} · ${esc(t("economy.derank"))} ${p.data.value[1]}` },
    xAxis: { name: t("economy.gdprank"), nameLocation: "middle", nameGap: 25, type: "value", inverse: false },
    yAxis: { name: t("economy.derank"), type: "value" },
    series: [{ type: "scatter", symbolSize: 12,
      data: rows.map((r) => ({ name: cityLabel(r), city: r.city, value: [r.gdp_rank, r.de_rank] })),
      label: { show: true, position: "right", formatter: (p) => p.data.name, fontSize: 10 },
      labelLayout: { hideOverlap: true },
      markLine: { silent: true, symbol: "none", lineStyle: { type: "dashed", color: "#999" },
        data: [[{ coord: [0, 0] }, { coord: [70, 70] }]] } }],
  }, true);
  sc.off("click");
  sc.on("click", (p) => showCity(p.data.city));
  const idx = d.index;
  const ic = chart("chart-index");
  if (idx) {
    const top = idx.rows.slice(0, 25);
    const tiers = [...new Set(idx.rows.map((r) => r.tier))];
    const tierName = (tier) => String(tier).replace(/^tier (\d+)$/, (m, n) => `${t("economy.tier")} ${n}`);
    const colors = ["#1a9850", "#91cf60", "#fc8d59", "#d73027", "#999"];
    ic.setOption({ animation: false,
      grid: { left: 40, right: 10, top: 24, bottom: 30 },
      tooltip: {},
      legend: { data: tiers.map(tierName), top: 0 },
      xAxis: { type: "category", data: top.map((r) => String(r.POLYID ?? r.id ?? "")) },
      yAxis: { type: "value", name: t("col.score") },
      series: tiers.map((tier, i) => ({ name: tierName(tier), type: "bar", stack: "s", color: colors[i % colors.length],
        data: top.map((r) => (r.tier === tier ? r.score : null)) })),
    }, true);
  } else ic.setOption({ animation: false, title: { text: t("economy.none"), textStyle: { fontSize: 12 } } }, true);
  const dc = chart("chart-dagum");
  if (d.disparity) {
    const r = d.disparity.rows;
    dc.setOption({ animation: false,
      grid: { left: 45, right: 10, top: 30, bottom: 30 },
      tooltip: { trigger: "axis" },
      legend: { top: 0, data: [t("economy.within"), t("economy.between"), t("economy.trans"), t("economy.gini")] },
      xAxis: { type: "category", data: r.map((x) => String(x.year)) },
      yAxis: { type: "value" },
      series: [
        { name: t("economy.within"), type: "bar", stack: "g", data: r.map((x) => x.within) },
        { name: t("economy.between"), type: "bar", stack: "g", data: r.map((x) => x.net_between) },
        { name: t("economy.trans"), type: "bar", stack: "g", data: r.map((x) => x.transvariation) },
        { name: t("economy.gini"), type: "line", data: r.map((x) => x.gini) },
      ],
    }, true);
  }
  if (S.city) showCity(S.city);
}

function showCity(city) {
  const d = S.data.economy;
  if (!d) return;
  const r = d.cities.rows.find((x) => x.city === city);
  if (!r) return;
  S.city = city;
  const box = document.getElementById("city-detail");
  box.innerHTML = `<h3 id="city-title">${esc(t("economy.cityof", { city: cityLabel(r) }))}</h3>`
    + table([{ a: t("economy.derank"), b: r.de_rank }, { a: t("economy.gdprank"), b: r.gdp_rank },
      { a: t("economy.placesabove"), b: r.places_above }], [["a", ""], ["b", ""]]);
  box.dataset.city = city;
  chart("chart-city").setOption({ animation: false,
    grid: { left: 45, right: 10, top: 30, bottom: 30 },
    tooltip: { trigger: "axis" },
    title: { text: t("economy.score"), textStyle: { fontSize: 12 } },
    xAxis: { type: "category", data: d.cities.years.map(String) },
    yAxis: { type: "value" },
    series: [{ name: t("economy.score"), type: "line", data: r.series.de_score, label: { show: true } }],
  }, true);
}

// -- space --
async function renderSpace(move) {
  const d = await viewData("space");
  if (d.centers) {
    setOverlay("space-centers", d.centers.geojson, [
      { id: "space-centers-line", type: "line", paint: { "line-color": "#e41a1c", "line-width": 3 } },
    ]);
    if (move) fitGeojson(d.centers.geojson, 80);
    document.getElementById("space-centers").innerHTML = table(d.centers.rows,
      [["center_id", t("col.id")], ["rank", t("col.rank")], ["activity", "activity"], ["share", "share"], ["area_km2", "km²"]]);
    legend(`<span class="swatch" style="background:#e41a1c"></span>${esc(t("space.centers"))}`);
  }
  if (d.mix) {
    chart("chart-mix").setOption({ animation: false,
      grid: { left: 45, right: 10, top: 10, bottom: 70 }, tooltip: {},
      xAxis: { type: "category", data: d.mix.rows.map((r) => r.category), axisLabel: { rotate: 50, fontSize: 10 } },
      yAxis: { type: "value", name: t("space.count") },
      series: [{ type: "bar", data: d.mix.rows.map((r) => r.count), color: "#2ca02c" }],
    }, true);
  }
  if (d.coverage) {
    const rows = d.coverage.rows;
    chart("chart-coverage").setOption({ animation: false,
      grid: { left: 90, right: 20, top: 10, bottom: 30 }, tooltip: {},
      xAxis: { type: "value", max: 1, name: t("space.share") },
      yAxis: { type: "category", data: rows.map((r) => r.category) },
      series: [{ type: "bar", data: rows.map((r) => r.share_covered), color: "#ff7f0e" }],
    }, true);
    const gaps = d.coverage.gaps || [];
    document.getElementById("space-gaps").textContent = gaps.length ? t("space.gaps", { list: gaps.join(", ") }) : "";
  }
  const cmp = document.getElementById("space-compare");
  cmp.innerHTML = d.compare ? `<h3>${esc(t("space.compare"))} (${esc(d.compare.dataset)})</h3>`
    + table(d.compare.rows, [["snapshot", t("space.snapshot")], ["center_id", t("col.id")], ["status", t("space.status")],
      ["activity", "activity"], ["level", t("space.level")]])
    + table(d.compare.indices || [], [["index", t("space.index")], ["a", "a"], ["b", "b"], ["change", t("space.change")]]) : "";
  renderJobs();
}

async function renderJobs() {
  const box = document.getElementById("space-jobs");
  if (!S.info.jobs) { box.textContent = t("space.nojobs"); return; }
  if (!S.processes) S.processes = (await api("/processes")).processes;
  box.innerHTML = "";
  for (const p of S.processes.filter((x) => x.id.startsWith("spatial"))) {
    const b = document.createElement("button");
    b.textContent = `${t("space.run")}: ${p.title}`;
    b.dataset.process = p.id;
    b.addEventListener("click", () => runJob(p, {}));
    box.append(b);
  }
}

async function runJob(proc, inputs) {
  const box = document.getElementById("job-progress");
  const job = await api(`/processes/${proc.id}/execution`, { method: "POST", json: { inputs } });
  const line = document.createElement("div");
  line.innerHTML = `<div class="job-text"></div><div class="progress"><div style="width:0%"></div></div>`;
  box.prepend(line);
  const text = line.querySelector(".job-text"), bar = line.querySelector(".progress > div");
  for (;;) {
    const s = await api(`/jobs/${job.jobID}`);
    text.textContent = t("job.status", { title: proc.title, status: s.status, progress: s.progress, message: s.message || "" });
    bar.style.width = `${s.progress}%`;
    line.dataset.status = s.status;
    if (["successful", "failed", "dismissed"].includes(s.status)) {
      if (s.status === "successful") {
        const res = await api(`/jobs/${job.jobID}/results`);
        const names = (res.datasets || []).map((x) => `${x.dataset} v${x.version}`).join(", ");
        text.textContent += " · " + t("job.results", { list: names });
        S.data.space = null;
      }
      return s;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

// -- twin --
const AQI_COLORS = ["#00e400", "#00e400", "#ffff00", "#ff7e00", "#ff0000", "#99004c", "#7e0023"];

function stationName(s) {
  return s.name || s.id.split(":").pop();
}

function stationsGeojson(stations) {
  return {
    type: "FeatureCollection",
    features: stations.filter((s) => s.lon !== null && s.lat !== null).map((s) => ({
      type: "Feature", geometry: { type: "Point", coordinates: [s.lon, s.lat] },
      properties: { id: s.id, aqi: s.aqi ?? -1, level: s.category ? s.category.level : 0 },
    })),
  };
}

async function renderTwin(move, at) {
  const box = document.getElementById("twin-stations");
  if (!S.info.twin.read) { box.textContent = t("twin.noaccess"); return; }
  const d = at ? await api(`/views/twin?at=${encodeURIComponent(at)}`) : await viewData("twin", true);
  const gj = stationsGeojson(d.stations);
  S.twinGeojson = gj;
  setOverlay("twin", gj, [{ id: "twin-stations", type: "circle", paint: {
    "circle-radius": 9, "circle-stroke-color": "#222", "circle-stroke-width": 1,
    "circle-color": ["match", ["get", "level"], 1, AQI_COLORS[1], 2, AQI_COLORS[2], 3, AQI_COLORS[3], 4, AQI_COLORS[4], 5, AQI_COLORS[5], 6, AQI_COLORS[6], "#bbbbbb"] } }]);
  if (move && gj.features.length) fitGeojson(gj, 80);
  legend(AQI_COLORS.slice(1).map((c, i) => `<span class="swatch" style="background:${c}"></span>${i + 1}`).join(" "));
  box.innerHTML = d.stations.length ? table(d.stations.map((s) => ({
    id: stationName(s), aqi: s.aqi, level: s.category ? (S.lang === "zh" ? s.category.zh : s.category.en) : "",
    pm25: s.attrs.pm25 ? s.attrs.pm25.value : null,
  })), [["id", t("col.id")], ["aqi", t("col.aqi")], ["level", t("col.level")], ["pm25", "PM2.5"]])
    : `<p class="hint">${esc(t("twin.nostations"))}</p><p class="hint" id="twin-feed">${esc(t("twin.howtofeed"))}</p>`;
  // no time to slide over and nothing to forecast before the first station reports
  document.getElementById("twin-time").hidden = !d.span;
  document.getElementById("twin-forecast").hidden = !d.stations.length;
  if (!at) {
    for (const a of d.alerts) S.alerts.set(a.id, a);
    renderAlerts();
    setupSlider(d.span);
    const sel = document.getElementById("forecast-entity");
    const cur = sel.value;
    sel.innerHTML = d.stations.map((s) => `<option value="${esc(s.id)}">${esc(stationName(s))}</option>`).join("");
    if (cur) sel.value = cur;
    if (d.stations.length) renderForecast(sel.value);
    await window.citytwinScenarios?.render(move); // a simulation scenario beside reality (scenarios.js)
  }
}

function setupSlider(span) {
  const sl = document.getElementById("time-slider");
  if (!span) { sl.max = 0; return; }
  const lo = Date.parse(span[0]), hi = Date.parse(span[1]);
  const hours = Math.max(0, Math.round((hi - lo) / 3600e3));
  S.sliderStart = lo;
  sl.max = String(hours);
  sl.value = String(hours);
  document.getElementById("time-label").textContent = t("twin.live");
}

function onSlider() {
  const sl = document.getElementById("time-slider");
  const at = new Date(S.sliderStart + Number(sl.value) * 3600e3).toISOString();
  const live = sl.value === sl.max;
  document.getElementById("time-label").textContent = live ? t("twin.live") : at.replace("T", " ").slice(0, 16);
  clearTimeout(S.sliderTimer);
  S.sliderTimer = setTimeout(() => renderTwin(false, live ? undefined : at).catch(showError), 150);
}

function renderAlerts() {
  const box = document.getElementById("alert-list");
  const list = [...S.alerts.values()].sort((a, b) => String(b.opened_at || "").localeCompare(String(a.opened_at || "")));
  if (!list.length) { box.innerHTML = `<p class="hint">${esc(t("twin.noalerts"))}</p>`; return; }
  const write = S.info.twin.write;
  box.innerHTML = list.slice(0, 50).map((a) => `<div class="alert ${esc(a.status)}" data-alert="${esc(a.id)}">
    <b>${esc(a.rule)}</b> · ${esc(a.entity)} · ${esc(t(`status.${a.status}`))} · ${esc(a.severity || "")}
    ${a.peak !== null && a.peak !== undefined ? ` · peak ${esc(fmt(a.peak, 0))}` : ""}<br>
    <span class="hint">${esc(a.message || "")}</span><br>
    ${write && a.status === "open" ? `<button data-act="ack">${esc(t("twin.ack"))}</button>` : ""}
    ${write && a.status !== "resolved" ? `<button data-act="resolve">${esc(t("twin.resolve"))}</button>` : ""}</div>`).join("");
}

async function alertAction(id, act) {
  const a = await api(`/twin/v1/alerts/${encodeURIComponent(id)}/${act}`, { method: "POST", json: {} });
  S.alerts.set(a.id, a);
  renderAlerts();
}

function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 8000);
}

// Server-Sent Events read with fetch (so the bearer token travels in a header, not in the URL);
// reconnects after 2 s with Last-Event-ID so that no event is missed.
async function openStream(path, onEvent, ctrl) {
  let last = null;
  for (;;) {
    try {
      const headers = { Authorization: `Bearer ${S.token}` };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const r = await fetch(path, { headers, signal: ctrl.signal });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) ev.id = line.slice(3).trim();
            else if (line.startsWith("event:")) ev.event = line.slice(6).trim();
            else if (line.startsWith("data:")) ev.data += line.slice(5).trim();
          }
          if (ev.id) last = ev.id;
          if (ev.data) onEvent(JSON.parse(ev.data), ev.event);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

function startAlertStream() {
  const ctrl = new AbortController();
  S.stream = ctrl;
  openStream("/twin/v1/alerts/stream", onAlertEvent, ctrl);
  // observation updates: the stations' colours follow the live state while the slider is at "live"
  openStream("/twin/v1/observations/stream", () => {
    const sl = document.getElementById("time-slider");
    if (S.view === "twin" && sl.value === sl.max) refreshTwinSoon();
  }, ctrl);
}

function refreshTwinSoon() {
  clearTimeout(S.twinTimer);
  S.twinTimer = setTimeout(() => renderTwin(false).catch(showError), 300);
}

function onAlertEvent(rec) {
  const a = rec.alert;
  if (!a) return;
  S.alerts.set(a.id, a);
  if (rec.kind === "open") toast(t("twin.newalert", { rule: a.rule, entity: a.entity }));
  renderAlerts();
  const sl = document.getElementById("time-slider");
  if (S.view === "twin" && sl.value === sl.max) refreshTwinSoon();
}

async function renderForecast(entity) {
  if (!entity) return;
  const [hist, fc] = await Promise.all([
    api(`/twin/v1/history?entity=${encodeURIComponent(entity)}&property=pm25&interval=1%20hour&funcs=avg`),
    api(`/twin/v1/forecasts?entity=${encodeURIComponent(entity)}&property=pm25`),
  ]);
  const actual = hist.data.map((r) => [r.time, r.avg ?? r.value ?? null]);
  const byModel = {};
  for (const f of fc.forecasts || []) (byModel[f.model] ||= []).push([f.target_time, f.value ?? f.forecast ?? null]);
  chart("chart-forecast").setOption({ animation: false,
    grid: { left: 45, right: 10, top: 30, bottom: 30 }, tooltip: { trigger: "axis" }, legend: { top: 0 },
    xAxis: { type: "time" }, yAxis: { type: "value", name: "PM2.5" },
    series: [{ name: t("twin.actual"), type: "line", showSymbol: actual.length < 60, data: actual },
      ...Object.entries(byModel).map(([m, data]) => ({ name: t("twin.forecastline", { model: m }), type: "line", data }))],
  }, true);
}

// -- catalog --
async function renderCatalog() {
  const d = await viewData("catalog");
  document.getElementById("catalog-table").innerHTML = table(d.datasets, [
    ["name", t("col.name")], ["classification", t("col.classification")], ["version", t("col.version")],
    ["rows", t("col.rows")], ["quarantined", t("col.quarantined")], ["quality", t("col.quality")]]);
  const kinds = [...new Set(d.datasets.map((x) => x.kind))];
  chart("chart-lineage").setOption({ animation: false,
    tooltip: {}, legend: { top: 0, data: kinds },
    series: [{
      type: "graph", layout: "force", roam: true, draggable: true, force: { repulsion: 180, edgeLength: 80 },
      categories: kinds.map((k) => ({ name: k })),
      label: { show: true, position: "right", fontSize: 10 }, edgeSymbol: ["none", "arrow"], edgeSymbolSize: 7,
      data: d.datasets.map((x) => ({ name: x.name, category: kinds.indexOf(x.kind), symbolSize: 10 + 20 * (x.quality ?? 0.5),
        value: x.quality })),
      links: d.lineage.map((e) => ({ source: e.source, target: e.target })),
    }],
  }, true);
}

// -- reports --
async function openReport(f) {
  const st = document.getElementById("report-status");
  st.textContent = t("reports.making");
  const r = await api(`/reports/${S.view}?f=${f}`, { raw: true });
  const blob = await r.blob();
  window.open(URL.createObjectURL(blob), "_blank");
  st.textContent = t("reports.done");
}

// ---- wiring ----------------------------------------------------------------------------------
function wire() {
  document.getElementById("lang").addEventListener("change", (e) => setLang(e.target.value));
  document.getElementById("signout").addEventListener("click", signOut);
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("login-error");
    err.textContent = "";
    try {
      await login(document.getElementById("login-user").value.trim(), document.getElementById("login-token").value.trim());
    } catch (ex) {
      err.textContent = `${t("login.failed")}: ${ex.message}`;
    }
  });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showView(b.dataset.view));
  document.getElementById("time-slider").addEventListener("input", onSlider);
  document.getElementById("forecast-entity").addEventListener("change", (e) => renderForecast(e.target.value).catch(showError));
  document.getElementById("alert-list").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]");
    if (b) alertAction(b.closest("[data-alert]").dataset.alert, b.dataset.act).catch(showError);
  });
  document.getElementById("report-html").addEventListener("click", () => openReport("html").catch(showError));
  document.getElementById("report-pdf").addEventListener("click", () => openReport("pdf").catch(showError));
  window.addEventListener("resize", () => { for (const c of Object.values(S.charts)) c.resize(); });
}

async function start() {
  wire();
  const saved = localStorage.getItem("citytwin.lang");
  const lang = saved || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
  await setLang(lang);
  const auth = sessionStorage.getItem("citytwin.auth");
  if (auth) {
    const { user, token } = JSON.parse(auth);
    try { await login(user, token); } catch (e) { sessionStorage.removeItem("citytwin.auth"); }
  }
}

start();
