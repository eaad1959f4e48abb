// citytwin operations center: participation (issue 17). Consultations (the plan on the map, comments at
// a point placed on the map or on an area drawn on it, replies, votes and survey answers), the report form (Open311 GeoReport v2,
// the signed-in user's token as api_key), case handling for staff (route, close), the layer of
// complaints / incidents / comments beside the sensors, and the demand map (complaints per H3 cell).
// Uses the helpers app.js puts on window.citytwin (api, esc, t, setOverlay, fitGeojson, legend).
// Every text from the server is inserted with textContent or esc(): HTML in a comment stays text.

const P = { consultations: [], current: null, placing: null, point: null, drawing: null, services: null, lang: "en" };
window.citytwinParticipation = P;

const DICT = {
  en: {
    title: "Consultations", none: "No consultation yet.", period: "Open {starts} – {ends}", documents: "Documents",
    comments: "Comments", comment: "Your comment", place: "Place on the map", placed: "Place: {lon}, {lat}",
    clickmap: "Click the map to place it", send: "Send comment", reply: "Reply", vote: "Vote", answer: "Answer",
    voted: "Your answer: {value}", notverified: "Only verified residents vote and answer surveys.",
    results: "Results", report: "Report a problem", service: "Service", description: "Description",
    submit: "Send report", reported: "Report {id} received", cases: "Cases", assign: "Route to",
    close: "Close", department: "department", demand: "Demand map", demandhelp: "Complaints per H3 cell",
    layer: "Cases and comments", mycomments: "Comment sent", onmap: "on the map", hidden: "hidden",
    draw: "Draw an area", finish: "Finish area", cancel: "Cancel",
    drawhelp: "Click the map to add corners; double-click or Finish to close the area; Esc cancels",
    drawn: "Area: {n} corners", fewcorners: "An area needs at least 3 corners", drawcancelled: "Drawing cancelled",
    topics: "Topics of the comments", topic: "Topic", answers: "comments", notopics: "Too few comments for topics",
  },
  zh: {
    title: "公众参与", none: "暂无征询。", period: "征询期 {starts} – {ends}", documents: "文件", comments: "意见",
    comment: "您的意见", place: "在地图上定位", placed: "位置：{lon}, {lat}", clickmap: "请点击地图定位",
    send: "提交意见", reply: "回复", vote: "投票", answer: "回答", voted: "您的回答：{value}",
    notverified: "仅经核实的居民可投票和答卷。", results: "结果", report: "反映问题", service: "类别",
    description: "描述", submit: "提交", reported: "已受理 {id}", cases: "案件", assign: "派往",
    close: "办结", department: "部门", demand: "诉求分布", demandhelp: "各 H3 网格的诉求数",
    layer: "案件与意见", mycomments: "意见已提交", onmap: "已定位", hidden: "已隐藏",
    draw: "在地图上画区域", finish: "完成区域", cancel: "取消",
    drawhelp: "点击地图添加顶点；双击或点“完成区域”闭合；Esc 取消", drawn: "区域：{n} 个顶点",
    fewcorners: "区域至少需要 3 个顶点", drawcancelled: "已取消绘制",
    topics: "意见主题", topic: "主题", answers: "条意见", notopics: "意见太少，无法归纳主题",
  },
};

const C = () => window.citytwin;
function tr(key, vars) {
  const lang = C().lang === "zh" ? "zh" : "en";
  let s = DICT[lang][key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
const staff = () => C().info && C().info.role !== "public";
function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- the map layer of cases and comments (beside the sensors) ------------------------------------
const TYPE_COLORS = ["match", ["get", "type"], "ServiceRequest", "#e6550d", "Incident", "#b00020",
  "ConsultationComment", "#3182bd", "#777"];

P.onLogin = async function onLogin() {
  const S = C();
  S.map.on("click", onMapClick);
  S.map.on("dblclick", (ev) => { if (P.drawing) { ev.preventDefault(); finishArea(); } });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && P.drawing) cancelArea(); });
  // an overlay, not a workspace collection: listed below the collections' layer list
  const list = el("div", { id: "overlay-list" });
  document.getElementById("layers").append(list);
  const label = el("label");
  const box = el("input", { type: "checkbox", "data-layer": "participation" });
  box.checked = true;
  box.addEventListener("change", () => {
    for (const id of ["part-cases", "part-areas-fill", "part-areas-line"]) {
      if (S.map.getLayer(id)) S.map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
    }
  });
  label.append(box, " ");
  label.insertAdjacentHTML("beforeend", `<span class="swatch" style="background:#e6550d"></span>`);
  label.append(el("span", {}, tr("layer")));
  list.append(label);
  await P.refreshLayer();
};

P.refreshLayer = async function refreshLayer() {
  const fc = await C().api("/participation/v1/map");
  P.entities = fc;
  // area comments: the area itself (fill + outline) under the markers
  const areas = { type: "FeatureCollection", features: fc.features.filter((f) => f.properties.area)
    .map((f) => ({ type: "Feature", id: f.id, geometry: f.properties.area, properties: { id: f.properties.id, type: f.properties.type } })) };
  C().setOverlay("part-areas", areas, [
    { id: "part-areas-fill", type: "fill", paint: { "fill-color": "#3182bd", "fill-opacity": 0.25 } },
    { id: "part-areas-line", type: "line", paint: { "line-color": "#08519c", "line-width": 2 } }]);
  C().setOverlay("part-cases", fc, [{ id: "part-cases", type: "circle", paint: {
    "circle-radius": 6, "circle-color": TYPE_COLORS, "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } }]);
};

function onMapClick(ev) {
  if (P.drawing) { addCorner(ev.lngLat); return; }
  if (!P.placing) return;
  P.point = { type: "Point", coordinates: [Number(ev.lngLat.lng.toFixed(6)), Number(ev.lngLat.lat.toFixed(6))] };
  const target = P.placing;
  P.placing = null;
  const out = document.getElementById(target);
  if (out) {
    out.textContent = tr("placed", { lon: P.point.coordinates[0], lat: P.point.coordinates[1] });
    out.dataset.placed = JSON.stringify(P.point);
  }
  C().setOverlay("part-point", { type: "FeatureCollection", features: [{ type: "Feature", geometry: P.point, properties: {} }] },
    [{ id: "part-point", type: "circle", paint: { "circle-radius": 7, "circle-color": "#ffd400", "circle-stroke-color": "#222", "circle-stroke-width": 1 } }]);
}

// ---- drawing an area (MapLibre only): click adds a corner, double-click or Finish closes, Esc cancels ----
const DRAW_LAYERS = [
  { id: "part-draw-fill", type: "fill", filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#ffd400", "fill-opacity": 0.3 } },
  { id: "part-draw-line", type: "line", filter: ["!=", ["geometry-type"], "Point"], paint: { "line-color": "#222", "line-width": 2, "line-dasharray": [2, 1] } },
  { id: "part-draw-corners", type: "circle", filter: ["==", ["geometry-type"], "Point"], paint: { "circle-radius": 4, "circle-color": "#ffd400", "circle-stroke-color": "#222", "circle-stroke-width": 1 } }];

function startArea(target) {
  const S = C();
  P.placing = null;
  P.drawing = { target, corners: [] };
  S.map.doubleClickZoom.disable();
  S.map.getCanvas().style.cursor = "crosshair";
  const out = document.getElementById(target);
  if (out) { out.textContent = tr("drawhelp"); delete out.dataset.placed; }
  document.getElementById("part-draw-finish")?.removeAttribute("hidden");
  document.getElementById("part-draw-cancel")?.removeAttribute("hidden");
  showDrawing();
}

function addCorner(lngLat) {
  const c = [Number(lngLat.lng.toFixed(6)), Number(lngLat.lat.toFixed(6))];
  const cs = P.drawing.corners;
  const last = cs[cs.length - 1];
  if (last && last[0] === c[0] && last[1] === c[1]) return; // the two clicks of a double-click
  cs.push(c);
  showDrawing();
}

function showDrawing() {
  const cs = P.drawing ? P.drawing.corners : [];
  const feats = cs.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c }, properties: {} }));
  if (cs.length >= 3) feats.push({ type: "Feature", geometry: { type: "Polygon", coordinates: [[...cs, cs[0]]] }, properties: {} });
  else if (cs.length === 2) feats.push({ type: "Feature", geometry: { type: "LineString", coordinates: cs }, properties: {} });
  C().setOverlay("part-draw", { type: "FeatureCollection", features: feats }, DRAW_LAYERS);
}

function endDrawing() {
  const S = C();
  P.drawing = null;
  S.map.doubleClickZoom.enable();
  S.map.getCanvas().style.cursor = "";
  document.getElementById("part-draw-finish")?.setAttribute("hidden", "");
  document.getElementById("part-draw-cancel")?.setAttribute("hidden", "");
}

function finishArea() {
  const d = P.drawing;
  if (!d) return;
  const out = document.getElementById(d.target);
  if (d.corners.length < 3) { if (out) out.textContent = tr("fewcorners"); return; }
  const area = { type: "Polygon", coordinates: [[...d.corners, d.corners[0]]] };
  endDrawing();
  if (out) { out.textContent = tr("drawn", { n: d.corners.length }); out.dataset.placed = JSON.stringify(area); }
  C().setOverlay("part-draw", { type: "FeatureCollection", features: [{ type: "Feature", geometry: area, properties: {} }] }, DRAW_LAYERS);
}

function cancelArea() {
  const d = P.drawing;
  if (!d) return;
  endDrawing();
  const out = document.getElementById(d.target);
  if (out) { out.textContent = tr("drawcancelled"); delete out.dataset.placed; }
  C().setOverlay("part-draw", { type: "FeatureCollection", features: [] }, DRAW_LAYERS);
}
P.startArea = startArea;
P.finishArea = finishArea;
P.cancelArea = cancelArea;

// ---- the view --------------------------------------------------------------------------------------
P.render = async function render(move) {
  const box = document.getElementById("view-participation");
  box.innerHTML = "";
  const cons = el("section", { id: "part-consultations" });
  cons.append(el("h3", {}, tr("title")));
  box.append(cons);
  P.consultations = await C().api("/consultations");
  if (!P.consultations.length) cons.append(el("p", { class: "hint" }, tr("none")));
  const picker = el("div", { id: "part-list" });
  for (const c of P.consultations) {
    const b = el("button", { "data-consultation": String(c.id) }, c.title);
    b.addEventListener("click", () => openConsultation(c.id, true).catch(showError));
    picker.append(b, " ");
  }
  cons.append(picker, el("div", { id: "part-detail" }));
  box.append(reportForm());
  if (staff()) box.append(el("h3", {}, tr("cases")), el("div", { id: "part-cases" }));
  const dm = el("button", { id: "part-demand" }, tr("demand"));
  dm.addEventListener("click", () => showDemand().catch(showError));
  box.append(el("h3", {}, tr("demand")), dm, el("div", { id: "part-demand-table" }));
  box.append(el("p", { id: "part-status", class: "error", role: "alert" }));
  const pick = P.current ?? P.consultations[0]?.id;
  if (pick !== undefined) await openConsultation(pick, move);
  if (staff()) await renderCases();
};

function showError(e) {
  const s = document.getElementById("part-status");
  if (s) s.textContent = String(e.message || e);
}

async function openConsultation(id, move) {
  const S = C();
  const c = await S.api(`/consultations/${id}`);
  P.current = c.id;
  const box = document.getElementById("part-detail");
  box.innerHTML = "";
  box.dataset.consultation = String(c.id);
  box.append(el("h3", { id: "part-title" }, c.title),
    el("p", { class: "hint" }, tr("period", { starts: c.starts.slice(0, 10), ends: c.ends.slice(0, 10) })));
  if (c.documents.length) {
    const ul = el("ul");
    for (const d of c.documents) {
      const li = el("li");
      if (/^https?:\/\//i.test(d)) { const a = el("a", { href: d, target: "_blank", rel: "noopener" }, d); li.append(a); }
      else li.textContent = d;
      ul.append(li);
    }
    box.append(el("b", {}, tr("documents")), ul);
  }
  if (c.plan) {
    S.setOverlay("part-plan", c.plan, [
      { id: "part-plan-fill", type: "fill", paint: { "fill-color": "#6a51a3", "fill-opacity": 0.25 } },
      { id: "part-plan-line", type: "line", paint: { "line-color": "#54278f", "line-width": 2 } }]);
    if (move) S.fitGeojson(c.plan, 60);
  }
  // questions: votes and survey answers
  const qs = el("div", { id: "part-questions" });
  if (!c.you.verified && c.questions.length) qs.append(el("p", { class: "hint" }, tr("notverified")));
  for (const q of c.questions) qs.append(questionForm(c, q));
  box.append(qs);
  // comments and the comment form
  box.append(el("h3", {}, tr("comments")), el("div", { id: "part-comments" }));
  const form = el("div", { id: "part-comment-form" });
  const ta = el("textarea", { id: "part-comment-text", rows: "3", maxlength: "4000", "aria-label": tr("comment"), placeholder: tr("comment") });
  ta.style.width = "100%";
  const place = el("button", { id: "part-place" }, tr("place"));
  const where = el("span", { id: "part-where", class: "hint" });
  place.addEventListener("click", () => { cancelArea(); P.placing = "part-where"; where.textContent = tr("clickmap"); });
  const draw = el("button", { id: "part-draw" }, tr("draw"));
  draw.addEventListener("click", () => startArea("part-where"));
  const finish = el("button", { id: "part-draw-finish", hidden: "" }, tr("finish"));
  finish.addEventListener("click", finishArea);
  const cancel = el("button", { id: "part-draw-cancel", hidden: "" }, tr("cancel"));
  cancel.addEventListener("click", cancelArea);
  const send = el("button", { id: "part-comment-submit" }, tr("send"));
  send.addEventListener("click", () => sendComment(c.id, ta, where).catch(showError));
  form.append(ta, place, " ", draw, " ", finish, " ", cancel, " ", where, el("br"), send);
  box.append(form);
  box.append(el("h3", {}, tr("results")), el("div", { id: "part-results" }));
  await renderComments(c.id);
}

async function renderResults(cid) {
  const S = C();
  const seq = (P.resultsSeq = (P.resultsSeq || 0) + 1);
  const r = await S.api(`/consultations/${cid}/results`);
  const box = document.getElementById("part-results");
  if (!box || seq !== P.resultsSeq) return; // a later call is on its way: an earlier answer must not overwrite it
  const rows = r.questions.map((q) => ({ q: q.text, n: q.responses,
    counts: q.counts ? Object.entries(q.counts).map(([k, v]) => `${k}: ${v}`).join(", ") : "",
    mean: q.mean ?? "", kw: (q.keywords || []).slice(0, 8).map(([w, n]) => `${w} (${n})`).join(", ") }));
  box.innerHTML = S.table(rows, [["q", "?"], ["n", "n"], ["counts", "="], ["mean", "mean"], ["kw", "keywords"]]);
  const kw = r.keywords.slice(0, 12).map(([w, n]) => `${w} (${n})`).join(", ");
  box.append(el("p", { class: "hint", id: "part-results-summary" },
    `${tr("comments")}: ${r.comments} (${r.comments_with_place} ${tr("onmap")}, ${r.hidden_comments} ${tr("hidden")}) · ${kw}`));
  // topics of the comments (NMF over TF-IDF): top terms, share of the comments, an example
  const tp = el("div", { id: "part-topics" });
  for (const t of r.topics.topics) {
    const d = el("div", { class: "topic", "data-topic": String(t.topic) });
    d.append(el("b", {}, `${tr("topic")} ${t.topic} · ${Math.round(t.share * 100)}% (${t.answers} ${tr("answers")})`), " ",
      el("span", { class: "topic-terms" }, t.terms.slice(0, 6).map(([w]) => w).join(", ")));
    if (t.examples.length) d.append(el("div", { class: "hint topic-example" }, `“${t.examples[0]}”`));
    tp.append(d);
  }
  if (!r.topics.topics.length) tp.append(el("span", { class: "hint", title: r.topics.reason || "" }, tr("notopics")));
  box.append(el("b", {}, tr("topics")), tp);
}

function questionForm(c, q) {
  const div = el("div", { class: "question", "data-question": String(q.id) });
  div.append(el("b", {}, q.text), el("br"));
  const mine = c.you.answered[String(q.id)];
  if (mine !== undefined) {
    div.append(el("span", { class: "answered" }, tr("voted", { value: Array.isArray(mine) ? mine.join(", ") : mine })));
    return div;
  }
  const send = (value) => C().api(`/consultations/${c.id}/questions/${q.id}/answer`, { method: "POST", json: { value } })
    .then(() => openConsultation(c.id, false)).catch(showError);
  if (q.kind === "vote" || q.kind === "single") {
    for (const o of q.options) {
      const b = el("button", { "data-option": o }, o);
      b.disabled = !c.you.verified;
      b.addEventListener("click", () => send(o));
      div.append(b, " ");
    }
  } else if (q.kind === "multiple") {
    for (const o of q.options) {
      const l = el("label");
      l.append(el("input", { type: "checkbox", value: o }), ` ${o} `);
      div.append(l);
    }
    const b = el("button", {}, tr("answer"));
    b.disabled = !c.you.verified;
    b.addEventListener("click", () => send([...div.querySelectorAll("input:checked")].map((x) => x.value)));
    div.append(b);
  } else {
    const inp = q.kind === "scale" ? el("input", { type: "number", min: "1", max: String(q.scale_max || 5) }) : el("input", { type: "text", maxlength: "2000" });
    const b = el("button", {}, tr("answer"));
    b.disabled = !c.you.verified;
    b.addEventListener("click", () => send(q.kind === "scale" ? Number(inp.value) : inp.value));
    div.append(inp, " ", b);
  }
  return div;
}

async function renderComments(cid) {
  renderResults(cid).catch(showError);
  const list = await C().api(`/consultations/${cid}/comments`);
  const box = document.getElementById("part-comments");
  box.innerHTML = "";
  for (const m of list) {
    const d = el("div", { class: "comment", "data-comment": String(m.id) });
    if (m.parent_id !== null && m.parent_id !== undefined) d.style.marginLeft = "18px";
    const who = el("span", { class: "hint" }, `${m.author} · ${m.created.slice(0, 16).replace("T", " ")}${m.geometry ? ` · ${tr("onmap")}` : ""}`);
    const text = el("div", { class: "comment-text" }, m.text);
    const rep = el("button", { class: "reply" }, tr("reply"));
    rep.addEventListener("click", async () => {
      const r = window.prompt(tr("reply"));
      if (r) {
        await C().api(`/consultations/${cid}/comments`, { method: "POST", json: { text: r, parent: m.id } }).catch(showError);
        await renderComments(cid);
      }
    });
    d.append(who, text, rep);
    box.append(d);
  }
}

async function sendComment(cid, ta, where) {
  const body = { text: ta.value };
  if (where.dataset.placed) body.geometry = JSON.parse(where.dataset.placed);
  await C().api(`/consultations/${cid}/comments`, { method: "POST", json: body });
  ta.value = "";
  where.textContent = tr("mycomments");
  delete where.dataset.placed;
  C().setOverlay("part-draw", { type: "FeatureCollection", features: [] }, DRAW_LAYERS);
  await renderComments(cid);
  await P.refreshLayer();
}

// ---- the report form (Open311) ---------------------------------------------------------------------
function reportForm() {
  const sec = el("section", { id: "part-report" });
  sec.append(el("h3", {}, tr("report")));
  const sel = el("select", { id: "part-service", "aria-label": tr("service") });
  C().api("/open311/v2/services.json").then((list) => {
    for (const s of list) sel.append(el("option", { value: s.service_code }, s.service_name));
  }).catch(showError);
  const ta = el("textarea", { id: "part-report-text", rows: "2", maxlength: "4000", placeholder: tr("description") });
  ta.style.width = "100%";
  const place = el("button", { id: "part-report-place" }, tr("place"));
  const where = el("span", { id: "part-report-where", class: "hint" });
  place.addEventListener("click", () => { cancelArea(); P.placing = "part-report-where"; where.textContent = tr("clickmap"); });
  const send = el("button", { id: "part-report-submit" }, tr("submit"));
  const out = el("span", { id: "part-report-result" });
  send.addEventListener("click", async () => {
    const body = { api_key: C().token, service_code: sel.value, description: ta.value };
    if (where.dataset.placed) {
      const [lon, lat] = JSON.parse(where.dataset.placed).coordinates;
      Object.assign(body, { lat, long: lon });
    }
    const r = await fetch("/open311/v2/requests.json", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const j = await r.json();
    if (!r.ok) { out.textContent = j[0]?.description || r.statusText; out.className = "error"; return; }
    out.className = "";
    out.textContent = tr("reported", { id: j[0].service_request_id });
    out.dataset.request = j[0].service_request_id;
    ta.value = "";
    await P.refreshLayer();
    if (staff()) await renderCases();
  });
  sec.append(sel, ta, place, " ", where, el("br"), send, " ", out);
  return sec;
}

// ---- cases (staff) ---------------------------------------------------------------------------------
async function renderCases() {
  const rows = await C().api("/cases?limit=50");
  const box = document.getElementById("part-cases");
  box.innerHTML = "";
  const tbl = el("table");
  const head = el("tr");
  for (const h of ["#", tr("service"), "status", tr("department"), tr("description"), ""]) head.append(el("th", {}, h));
  tbl.append(head);
  for (const c of rows) {
    const tr_ = el("tr", { "data-case": String(c.id) });
    for (const v of [c.id, c.service_code || c.category || c.kind, c.status, c.department || "", c.description || ""]) tr_.append(el("td", {}, String(v)));
    const td = el("td");
    if (!["closed"].includes(c.status)) {
      const dep = el("input", { class: "dept", size: "10", placeholder: tr("department") });
      const go = el("button", { class: "assign" }, tr("assign"));
      go.addEventListener("click", () => caseAction(c.id, "assign", { department: dep.value }));
      const cl = el("button", { class: "close" }, tr("close"));
      cl.addEventListener("click", () => caseAction(c.id, "status", { status: "closed" }));
      td.append(dep, go, cl);
    }
    tr_.append(td);
    tbl.append(tr_);
  }
  box.append(tbl);
}

async function caseAction(id, act, body) {
  try {
    await C().api(`/cases/${id}/${act}`, { method: "POST", json: body });
    await renderCases();
    await P.refreshLayer();
  } catch (e) { showError(e); }
}

// ---- demand map ------------------------------------------------------------------------------------
async function showDemand() {
  const S = C();
  const fc = await S.api("/participation/v1/demand?res=9");
  P.demand = fc;
  const max = Math.max(1, ...fc.features.map((f) => f.properties.count));
  S.setOverlay("part-demand", fc, [{ id: "part-demand", type: "fill", paint: {
    "fill-color": ["interpolate", ["linear"], ["get", "count"], 1, "#fee6ce", max + 1e-9, "#a63603"], "fill-opacity": 0.7,
    "fill-outline-color": "#7f2704" } }]);
  if (fc.features.length) S.fitGeojson(fc, 80);
  S.legend(`${S.esc(tr("demandhelp"))}: 1–${max}`);
  const box = document.getElementById("part-demand-table");
  box.innerHTML = S.table(fc.features.map((f) => ({ h3: f.properties.h3, count: f.properties.count,
    by: Object.entries(f.properties.by_service).map(([k, v]) => `${k} ${v}`).join(", ") })), [["h3", "H3"], ["count", "n"], ["by", tr("service")]]);
}
