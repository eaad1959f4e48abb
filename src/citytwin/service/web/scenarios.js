// citytwin operations center: simulation scenarios beside reality in the twin view (issue 16).
// A selector lists "reality" and every scenario of GET /twin/v1/scenarios (with its status: running,
// complete, failed); choosing one draws its edges (coloured by simulated speed) and detectors (sized by
// vehicles per interval) from GET /ngsi-ld/v1/entities?scenario=NAME over the live stations, with a
// legend. A running scenario is read again every few seconds. Uses the helpers app.js puts on
// window.citytwin (api, esc, t, setOverlay, fitGeojson); every request goes to the serving origin.

const S = window.citytwin;
const SPEED_STOPS = [0, "#d73027", 15, "#fc8d59", 30, "#fee08b", 45, "#91cf60", 60, "#1a9850"]; // km/h
const LAYERS = ["twin-scenario-edges", "twin-scenario-detectors"];
const EMPTY = { type: "FeatureCollection", features: [] };
const SC = { list: [], name: "", geojson: EMPTY, timer: null };

async function entities(name) {
  const out = [];
  for (let offset = 0; ; offset += 10000) {
    const page = await S.api(`/ngsi-ld/v1/entities?scenario=${encodeURIComponent(name)}&type=TrafficFlowObserved`
      + `&limit=10000&offset=${offset}&options=keyValues`);
    out.push(...page);
    if (page.length < 10000) return out;
  }
}

function toGeojson(ents) {
  return {
    type: "FeatureCollection",
    features: ents.filter((e) => e.location).map((e) => ({
      type: "Feature", geometry: e.location,
      properties: {
        id: e.id, name: e.name ?? "", kind: e.id.includes(":detector:") ? "detector" : "edge",
        speed: typeof e.averageVehicleSpeed === "number" ? e.averageVehicleSpeed : -1,
        intensity: typeof e.intensity === "number" ? e.intensity : 0,
      },
    })),
  };
}

function draw() {
  S.setOverlay("twin-scenario", SC.geojson, [
    { id: "twin-scenario-edges", type: "circle", filter: ["==", ["get", "kind"], "edge"], paint: {
      "circle-radius": 5, "circle-stroke-color": "#333", "circle-stroke-width": 0.5,
      "circle-color": ["case", ["<", ["get", "speed"], 0], "#bbbbbb",
        ["interpolate", ["linear"], ["get", "speed"], ...SPEED_STOPS]] } },
    { id: "twin-scenario-detectors", type: "circle", filter: ["==", ["get", "kind"], "detector"], paint: {
      "circle-radius": ["interpolate", ["linear"], ["get", "intensity"], 0, 2, 20, 8],
      "circle-color": "#3b528b", "circle-opacity": 0.8, "circle-stroke-color": "#fff", "circle-stroke-width": 1 } },
  ]);
  for (const id of LAYERS) if (S.map.getLayer(id)) S.map.setLayoutProperty(id, "visibility", S.view === "twin" ? "visible" : "none");
}

function statusLabel(s) {
  return S.t(`scenario.status.${s.status || "complete"}`);
}

function renderLegend() {
  const box = document.getElementById("map-legend");
  box.querySelector("#scenario-legend")?.remove();
  if (!SC.name) return;
  const ramp = [];
  for (let i = 0; i < SPEED_STOPS.length; i += 2) ramp.push(`<span class="swatch" style="background:${SPEED_STOPS[i + 1]}"></span>${SPEED_STOPS[i]}`);
  const n = SC.geojson.features.length;
  box.insertAdjacentHTML("beforeend", `<div id="scenario-legend" data-scenario="${S.esc(SC.name)}" data-features="${n}">`
    + `<b>${S.esc(S.t("scenario.title"))}: ${S.esc(SC.name)}</b> · ${S.esc(S.t("scenario.speed"))}: ${ramp.join(" ")} `
    + `<span class="swatch" style="background:#bbbbbb"></span>${S.esc(S.t("scenario.nodata"))} · `
    + `<span class="swatch" style="background:#3b528b;border-radius:50%"></span>${S.esc(S.t("scenario.detector"))}</div>`);
}

function renderInfo() {
  const box = document.getElementById("scenario-info");
  const s = SC.list.find((x) => x.scenario === SC.name);
  if (!s) { box.textContent = ""; return; }
  box.textContent = S.t("scenario.info", { edges: s.edges ?? 0, detectors: s.detectors ?? 0, status: statusLabel(s),
    simulated: s.simulated_s ?? "—", start: s.start ?? "" }) + (s.error ? ` — ${s.error}` : "");
  box.dataset.status = s.status || "complete";
}

function fillSelect() {
  const sel = document.getElementById("twin-scenario");
  sel.innerHTML = `<option value="">${S.esc(S.t("scenario.reality"))}</option>`
    + SC.list.map((s) => `<option value="${S.esc(s.scenario)}">${S.esc(s.scenario)} (${S.esc(statusLabel(s))})</option>`).join("");
  sel.value = SC.list.some((s) => s.scenario === SC.name) ? SC.name : "";
  if (sel.value !== SC.name) SC.name = "";
}

async function load(move) {
  clearTimeout(SC.timer);
  SC.geojson = SC.name ? toGeojson(await entities(SC.name)) : EMPTY;
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
  load(true).catch((err) => { document.getElementById("scenario-info").textContent = String(err.message || err); });
});

window.citytwinScenarios = { render, state: SC };
