// citytwin operations center: simulation scenarios beside reality in the twin view (issue 16).
// A selector lists "reality" and every scenario of GET /twin/v1/scenarios (with its status: running,
// complete, failed; a running one over several seeds says which seed runs); choosing one draws its road
// segments as lines (each edge's SUMO shape, static `shape` of its entity; drawn on the right of its
// direction of travel) and its detectors (sized by vehicles per interval) from
// GET /ngsi-ld/v1/entities?scenario=NAME over the live stations, with a legend. A second selector colours
// the lines by simulated speed (latest interval) or by the change in the run's mean speed or CO2 per edge
// against another scenario (static `runMeanSpeedKmh`, `runCo2Kg`: set when a run is complete). A running
// scenario is read again every few seconds. Uses the helpers app.js puts on window.citytwin (api, esc, t,
// setOverlay, fitGeojson); every request goes to the serving origin.

const S = window.citytwin;
const GREY = "#bbbbbb";
const RAMPS = {
  speed: [0, "#d73027", 15, "#fc8d59", 30, "#fee08b", 45, "#91cf60", 60, "#1a9850"], // km/h
  dspeed: [-15, "#d73027", -5, "#fc8d59", 0, "#ffffbf", 5, "#91bfdb", 15, "#4575b4"], // km/h, slower = red
  dco2: [-50, "#4575b4", -10, "#91bfdb", 0, "#ffffbf", 10, "#fc8d59", 50, "#d73027"], // %, more = red
};
const LAYERS = ["twin-scenario-edges", "twin-scenario-edge-points", "twin-scenario-detectors"];
const EMPTY = { type: "FeatureCollection", features: [] };
const SC = { list: [], name: "", by: "speed", geojson: EMPTY, timer: null };

async function entities(name) {
  const out = [];
  for (let offset = 0; ; offset += 10000) {
    const page = await S.api(`/ngsi-ld/v1/entities?scenario=${encodeURIComponent(name)}&type=TrafficFlowObserved`
      + `&limit=10000&offset=${offset}&options=keyValues`);
    out.push(...page);
    if (page.length < 10000) return out;
  }
}

// the colouring chosen: "speed", or "dspeed:OTHER" / "dco2:OTHER" (change against scenario OTHER)
function mode() {
  const [kind, ...rest] = SC.by.split(":");
  return { kind: RAMPS[kind] ? kind : "speed", other: rest.join(":") };
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

function toGeojson(ents, others) {
  const ref = new Map((others || []).filter((e) => e.id.includes(":edge:")).map((e) => [e.name, e]));
  return {
    type: "FeatureCollection",
    features: ents.filter((e) => e.location).map((e) => {
      const edge = e.id.includes(":edge:");
      const props = {
        id: e.id, name: e.name ?? "", kind: edge ? "edge" : "detector",
        speed: num(e.averageVehicleSpeed) ?? -1, intensity: num(e.intensity) ?? 0,
      };
      const b = ref.get(e.name);
      if (edge && b) { // change against the other scenario over the whole run; missing stays missing (grey)
        const v = num(e.runMeanSpeedKmh), w = num(b.runMeanSpeedKmh);
        if (v !== null && w !== null) props.dspeed = v - w;
        const c = num(e.runCo2Kg), d = num(b.runCo2Kg);
        if (c !== null && d !== null && d > 0) props.dco2 = 100 * (c - d) / d;
      }
      const line = edge && e.shape && e.shape.type === "LineString";
      return { type: "Feature", geometry: line ? e.shape : e.location, properties: props };
    }),
  };
}

function colour() {
  const { kind } = mode();
  const prop = kind === "speed" ? "speed" : kind;
  const missing = kind === "speed" ? ["<", ["get", "speed"], 0] : ["!", ["has", prop]];
  return ["case", missing, GREY, ["interpolate", ["linear"], ["get", prop], ...RAMPS[kind]]];
}

function draw() {
  const isEdge = ["==", ["get", "kind"], "edge"];
  S.setOverlay("twin-scenario", SC.geojson, [
    { id: "twin-scenario-edges", type: "line", filter: ["all", isEdge, ["==", ["geometry-type"], "LineString"]],
      layout: { "line-cap": "round", "line-join": "round" }, paint: {
        "line-width": ["interpolate", ["linear"], ["zoom"], 12, 2, 17, 7],
        "line-offset": ["interpolate", ["linear"], ["zoom"], 12, 1, 17, 4], "line-color": colour() } },
    // scenarios published before edges carried their shape: a point at the edge's midpoint
    { id: "twin-scenario-edge-points", type: "circle", filter: ["all", isEdge, ["==", ["geometry-type"], "Point"]],
      paint: { "circle-radius": 5, "circle-stroke-color": "#333", "circle-stroke-width": 0.5, "circle-color": colour() } },
    { id: "twin-scenario-detectors", type: "circle", filter: ["==", ["get", "kind"], "detector"], paint: {
      "circle-radius": ["interpolate", ["linear"], ["get", "intensity"], 0, 2, 20, 8],
      "circle-color": "#3b528b", "circle-opacity": 0.8, "circle-stroke-color": "#fff", "circle-stroke-width": 1 } },
  ]);
  S.map.setPaintProperty("twin-scenario-edges", "line-color", colour());
  S.map.setPaintProperty("twin-scenario-edge-points", "circle-color", colour());
  for (const id of LAYERS) if (S.map.getLayer(id)) S.map.setLayoutProperty(id, "visibility", S.view === "twin" ? "visible" : "none");
}

function statusLabel(s) {
  return S.t(`scenario.status.${s.status || "complete"}`);
}

function renderLegend() {
  const box = document.getElementById("map-legend");
  box.querySelector("#scenario-legend")?.remove();
  if (!SC.name) return;
  const { kind, other } = mode();
  const stops = RAMPS[kind];
  const ramp = [];
  for (let i = 0; i < stops.length; i += 2) ramp.push(`<span class="swatch" style="background:${stops[i + 1]}"></span>${stops[i]}`);
  const what = kind === "speed" ? S.t("scenario.speed") : S.t(`scenario.${kind}`, { other });
  const n = SC.geojson.features.length;
  const lines = SC.geojson.features.filter((f) => f.geometry.type === "LineString").length;
  box.insertAdjacentHTML("beforeend", `<div id="scenario-legend" data-scenario="${S.esc(SC.name)}" data-features="${n}"`
    + ` data-lines="${lines}" data-by="${S.esc(SC.by)}">`
    + `<b>${S.esc(S.t("scenario.title"))}: ${S.esc(SC.name)}</b> · ${S.esc(what)}: ${ramp.join(" ")} `
    + `<span class="swatch" style="background:${GREY}"></span>${S.esc(S.t(kind === "speed" ? "scenario.nodata" : "scenario.nochange"))} · `
    + `<span class="swatch" style="background:#3b528b;border-radius:50%"></span>${S.esc(S.t("scenario.detector"))}</div>`);
}

function renderInfo() {
  const box = document.getElementById("scenario-info");
  const s = SC.list.find((x) => x.scenario === SC.name);
  if (!s) { box.textContent = ""; return; }
  const n = Array.isArray(s.seeds) ? s.seeds.length : 0;
  const seed = s.status === "running" && n > 1 && s.seed_running ? ` ${S.t("scenario.seed", { k: s.seed_running, n })}` : "";
  box.textContent = S.t("scenario.info", { edges: s.edges ?? 0, detectors: s.detectors ?? 0, status: statusLabel(s),
    simulated: s.simulated_s ?? "—", start: s.start ?? "" }) + seed + (s.error ? ` — ${s.error}` : "");
  box.dataset.status = s.status || "complete";
  box.dataset.seed = s.seed_running ?? "";
}

function fillSelect() {
  const sel = document.getElementById("twin-scenario");
  sel.innerHTML = `<option value="">${S.esc(S.t("scenario.reality"))}</option>`
    + SC.list.map((s) => `<option value="${S.esc(s.scenario)}">${S.esc(s.scenario)} (${S.esc(statusLabel(s))})</option>`).join("");
  sel.value = SC.list.some((s) => s.scenario === SC.name) ? SC.name : "";
  if (sel.value !== SC.name) SC.name = "";
  // the colouring: simulated speed, or the change against each other scenario
  let by = document.getElementById("twin-scenario-by");
  if (!by) {
    document.getElementById("twin-scenario").closest("label").insertAdjacentHTML("afterend",
      `<label id="twin-scenario-by-label" style="display:block"><span></span> <select id="twin-scenario-by" aria-label="colour by"></select></label>`);
    by = document.getElementById("twin-scenario-by");
    by.addEventListener("change", (e) => {
      SC.by = e.target.value;
      load(false).catch((err) => { document.getElementById("scenario-info").textContent = String(err.message || err); });
    });
  }
  document.querySelector("#twin-scenario-by-label span").textContent = S.t("scenario.colour");
  const others = SC.list.filter((s) => s.scenario !== SC.name);
  by.innerHTML = `<option value="speed">${S.esc(S.t("scenario.speed"))}</option>`
    + others.map((s) => ["dspeed", "dco2"].map((k) => `<option value="${k}:${S.esc(s.scenario)}">`
      + `${S.esc(S.t(`scenario.${k}`, { other: s.scenario }))}</option>`).join("")).join("");
  if (![...by.options].some((o) => o.value === SC.by)) SC.by = "speed";
  by.value = SC.by;
  document.getElementById("twin-scenario-by-label").hidden = !SC.name;
}

async function load(move) {
  clearTimeout(SC.timer);
  const { kind, other } = mode();
  const [ents, others] = SC.name
    ? await Promise.all([entities(SC.name), kind !== "speed" && other ? entities(other) : []]) : [[], []];
  SC.geojson = SC.name ? toGeojson(ents, others) : EMPTY;
  draw();
  renderLegend();
  renderInfo();
  if (move && SC.geojson.features.length) S.fitGeojson(SC.geojson, 60);
  const s = SC.list.find((x) => x.scenario === SC.name);
  if (s && s.status === "running") { // a simulation publishing as it runs: follow it
    SC.timer = setTimeout(() => refresh().catch(() => {}), 5000);
  }
}

async function refresh() {
  if (S.view !== "twin") return;
  SC.list = await S.api("/twin/v1/scenarios");
  fillSelect();
  await load(false);
}

// called by app.js after the twin view is drawn (its legend written): keep the chosen scenario on the map
async function render(move) {
  const box = document.getElementById("twin-scenarios");
  if (!S.info?.twin?.read) { box.hidden = true; return; }
  SC.list = await S.api("/twin/v1/scenarios");
  box.hidden = !SC.list.length;
  fillSelect();
  if (S.map.getSource("twin-scenario")) { draw(); renderLegend(); renderInfo(); } else await load(false);
  if (move && SC.name && SC.geojson.features.length) S.fitGeojson(SC.geojson, 60);
}

document.getElementById("twin-scenario").addEventListener("change", (e) => {
  SC.name = e.target.value;
  fillSelect();
  load(true).catch((err) => { document.getElementById("scenario-info").textContent = String(err.message || err); });
});

window.citytwinScenarios = { render, state: SC };
