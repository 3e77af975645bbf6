// erasekit web UI: plain JavaScript and Canvas, no build step.
//
// Coordinates: everything the user paints is stored in *image* pixels of the full-resolution photo (the mask
// canvas is the photo's size), so a large photo is displayed downscaled while the mask and the removal stay full
// resolution. The view maps image -> screen with `screen = image * view.scale + view.t`.
// Undo/redo is one history of documents: a document is (photo, strokes, result). Painting, Clear, Remove and
// Iterate each push the document they replace, so every one of them can be undone and redone. Strokes are kept as
// vectors (tool, size, points) and replayed, which costs no full-size bitmaps; photos and results are shared
// between the documents that show them.
"use strict";

const API = "/api/v1";
const DISPLAY_MAX_SIDE = 2048; // photos larger than this are shown from a downscaled copy
const HISTORY_LIMIT = 50;
const RETRY_LIMIT = 5;          // tries of a submission the server answers 503 (busy)
const OUTPUT_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"};

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");

const state = {
  source: null,        // {blob, name, width, height, display: ImageBitmap}
  mask: null,          // full-resolution canvas: painted pixels opaque
  tint: null,          // display-resolution canvas: the mask drawn in the overlay colour
  k: 1,                // display bitmap pixels per image pixel
  strokes: [],
  undo: [],            // documents to go back to: {source, strokes, result}
  redo: [],
  current: null,       // the stroke being painted
  touches: new Map(),  // active touch pointers: id -> [clientX, clientY]
  pinch: null,         // two-finger gesture: the view and the fingers when it began
  generation: 0,       // bumped when a new photo opens: a removal started before it must not draw
  job: null,           // the running job's id
  methods: {},         // name -> the server's description of it
  limits: {},
  tool: "brush",
  size: 40,
  maskVisible: true,
  result: null,        // {blob, format, display, alphaBlob, alphaTint, method, timings}
  showAlpha: false,
  compare: 0.5,
  view: {scale: 1, tx: 0, ty: 0},
  pointer: null,       // last pointer position on screen
  panning: null,
  spaceDown: false,
  busy: false,
  defaultMethod: null,
};

// --------------------------------------------------------------------------------------------------------------
// API access (token only when the server asks for one)
// --------------------------------------------------------------------------------------------------------------
function authHeaders() {
  const token = sessionStorage.getItem("erasekit-token");
  return token ? {Authorization: `Bearer ${token}`} : {};
}

async function api(path, options = {}) {
  const response = await fetch(API + path, {...options, headers: {...authHeaders(), ...(options.headers || {})}});
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.error) message = body.error.message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) $("token-group").hidden = false;
    const retry = response.headers.get("Retry-After");
    const error = new Error(retry ? `${message} (retry in ${retry} s)` : message);
    error.status = response.status;
    error.retryAfter = retry ? Number(retry) : null;
    error.missingWeights = /weights|install/i.test(message) && !retry;
    throw error;
  }
  return response;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A submission the server answers 503 (queue full) is tried again after its Retry-After, else with back-off.
async function submitWithRetry(path, makeBody, stillWanted) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api(path, {method: "POST", body: await makeBody()});
    } catch (error) {
      if (error.status !== 503 || attempt >= RETRY_LIMIT || error.missingWeights) throw error;
      const wait = error.retryAfter ? Math.min(30, error.retryAfter) : Math.min(30, 2 ** (attempt - 1));
      setStatus(`Server busy; trying again in ${wait} s (try ${attempt + 1} of ${RETRY_LIMIT})…`);
      await sleep(wait * 1000);
      if (!stillWanted()) throw Object.assign(new Error("superseded"), {superseded: true});
    }
  }
}

async function loadMethods() {
  try {
    const health = await (await fetch(API + "/health")).json();
    state.limits = health.limits || {};
    $("token-group").hidden = !health.auth;
    $("token").value = sessionStorage.getItem("erasekit-token") || "";
    const data = await (await api("/methods")).json();
    const select = $("method");
    select.replaceChildren();
    state.defaultMethod = data.default;
    if (data.default === "auto") select.append(new Option("auto (best available)", "auto"));
    let available = 0;
    for (const m of data.methods) {
      state.methods[m.name] = m;
      if (!m.available) continue;  // only what can run here
      const option = new Option(m.name, m.name);
      option.title = m.description;
      select.append(option);
      available++;
    }
    select.value = data.default;
    showMethodOptions();
    const refine = $("refine");
    refine.replaceChildren(new Option("none", ""));
    for (const r of data.refiners || []) {
      const option = new Option(r.name, r.name);
      option.title = r.description;
      refine.append(option);
    }
    setStatus(`${available} ${available === 1 ? "method" : "methods"} available.`);
  } catch (error) {
    setStatus(`Cannot list methods: ${error.message}`, "error");
  }
}

// The controls a method takes, from the typed options the server declares: prompt, target, steps, guidance, seed.
function declaredOption(method, name) {
  const m = state.methods[method];
  return m && m.options ? m.options.find((o) => o.name === name) || null : null;
}

function parseRange(text) {
  const match = /^[[(]\s*([-\d.e+]+)\s*,\s*([-\d.e+]+)\s*[\])]$/.exec(text || "");
  return match ? [Number(match[1]), Number(match[2])] : null;
}

function showMethodOptions() {
  const method = $("method").value;
  const m = state.methods[method];
  const stepLike = m && m.family !== "classical";
  const shown = {
    prompt: !!(m && m.takes_prompt),
    target: !!declaredOption(method, "target"),
    steps: !!declaredOption(method, "steps"),
    guidance: !!declaredOption(method, "guidance"),
    seed: !!stepLike && method !== "auto",
  };
  for (const [name, visible] of Object.entries(shown)) {
    $(`${name}-label`).hidden = !visible;
    const option = declaredOption(method, name);
    if (!option || !visible) continue;
    const range = parseRange(option.range);
    if (range) { $(name).min = range[0]; $(name).max = range[1]; }
    if (option.default !== null && option.default !== undefined) $(name).placeholder = String(option.default);
  }
  $("method-options").hidden = !Object.values(shown).some(Boolean);
}

function requestedSteps() {
  const typed = Number($("steps").value);
  if (!$("steps-label").hidden && typed > 0) return typed;
  const option = declaredOption($("method").value, "steps");
  return option && typeof option.default === "number" ? option.default : null;
}

// --------------------------------------------------------------------------------------------------------------
// Loading images
// --------------------------------------------------------------------------------------------------------------
async function displayBitmap(blob, width, height) {
  const scale = Math.min(1, DISPLAY_MAX_SIDE / Math.max(width, height));
  if (scale >= 1) return createImageBitmap(blob, {imageOrientation: "from-image"});
  return createImageBitmap(blob, {
    imageOrientation: "from-image", resizeWidth: Math.round(width * scale),
    resizeHeight: Math.round(height * scale), resizeQuality: "high",
  });
}

async function loadSource(blob, name) {
  let full;
  try {
    full = await createImageBitmap(blob, {imageOrientation: "from-image"});
  } catch (_) {
    setStatus("This file is not an image the browser can show.", "error");
    return null;
  }
  const width = full.width, height = full.height;
  full.close();
  const limit = state.limits.max_pixels;
  if (limit && width * height > limit) {
    const mp = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0);
    setStatus(`This photo is too large for this server: ${width}×${height} is ${mp(width * height)} megapixels, ` +
              `the limit is ${mp(limit)}. Make it smaller and open it again.`, "error");
    return null;
  }
  const display = await displayBitmap(blob, width, height);
  return {blob, name: name || "image", width, height, display};
}

// A new photo starts a new history; a removal still running for the old one is cancelled and never drawn.
async function openImage(blob, name) {
  const generation = ++state.generation;
  const source = await loadSource(blob, name);
  if (!source || generation !== state.generation) return;
  cancelRunningJob();
  state.undo = [];
  state.redo = [];
  setDocument({source, strokes: [], result: null});
  state.maskVisible = true;
  fit();
  setStatus(`Opened ${source.name}.`);
  document.body.dataset.state = "ready";
}

// Show a document: its photo (new mask canvases when the photo changes), its strokes and its result.
function setDocument(doc) {
  if (doc.source !== state.source) {
    const {width, height, display} = doc.source;
    state.source = doc.source;
    state.k = display.width / width;
    state.mask = makeCanvas(width, height);
    state.tint = makeCanvas(display.width, display.height);
    $("info").textContent = `${width}×${height}` + (state.k < 1 ? ` (shown at ${Math.round(state.k * 100)} %)` : "");
  }
  state.strokes = doc.strokes.slice();
  replayStrokes();
  showResultState(doc.result);
  updateButtons();
  draw();
}

function currentDocument() {
  return {source: state.source, strokes: state.strokes.slice(), result: state.result};
}

function pushHistory() {
  state.undo.push(currentDocument());
  if (state.undo.length > HISTORY_LIMIT) state.undo.shift();
  state.redo = [];
}

function makeCanvas(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function stem(name) {
  return name.replace(/\.[^.]+$/, "") || "image";
}

// --------------------------------------------------------------------------------------------------------------
// Painting
// --------------------------------------------------------------------------------------------------------------
function paintStroke(context, stroke, k, colour) {
  if (stroke.tool === "mask") {  // an uploaded mask: its canvas, in the overlay colour
    const layer = makeCanvas(context.canvas.width, context.canvas.height);
    const l = layer.getContext("2d");
    l.drawImage(stroke.canvas, 0, 0, layer.width, layer.height);
    l.globalCompositeOperation = "source-in";
    l.fillStyle = colour;
    l.fillRect(0, 0, layer.width, layer.height);
    context.drawImage(layer, 0, 0);
    return;
  }
  context.save();
  context.globalCompositeOperation = stroke.tool === "eraser" ? "destination-out" : "source-over";
  context.strokeStyle = context.fillStyle = colour;
  context.lineWidth = stroke.size * k;
  context.lineCap = context.lineJoin = "round";
  const pts = stroke.points;
  if (pts.length === 1) {
    context.beginPath();
    context.arc(pts[0][0] * k, pts[0][1] * k, (stroke.size * k) / 2, 0, 2 * Math.PI);
    context.fill();
  } else {
    context.beginPath();
    context.moveTo(pts[0][0] * k, pts[0][1] * k);
    for (let i = 1; i < pts.length; i++) context.lineTo(pts[i][0] * k, pts[i][1] * k);
    context.stroke();
  }
  context.restore();
}

const MASK_COLOUR = "#fff";
const TINT_COLOUR = "rgb(255, 50, 90)";

function paintSegment(stroke) {
  // Only the newest piece, on both the full-resolution mask and the display tint: cheap while dragging.
  const piece = {...stroke, points: stroke.points.slice(-2)};
  paintStroke(state.mask.getContext("2d"), piece, 1, MASK_COLOUR);
  paintStroke(state.tint.getContext("2d"), piece, state.k, TINT_COLOUR);
}

function replayStrokes() {
  const m = state.mask.getContext("2d");
  const t = state.tint.getContext("2d");
  m.clearRect(0, 0, state.mask.width, state.mask.height);
  t.clearRect(0, 0, state.tint.width, state.tint.height);
  for (const stroke of state.strokes) {
    paintStroke(m, stroke, 1, MASK_COLOUR);
    paintStroke(t, stroke, state.k, TINT_COLOUR);
  }
}

function undo() {
  if (!state.undo.length || state.busy) return;
  state.redo.push(currentDocument());
  setDocument(state.undo.pop());
}

function redo() {
  if (!state.redo.length || state.busy) return;
  state.undo.push(currentDocument());
  setDocument(state.redo.pop());
}

function clearMask() {
  if (!state.strokes.length) return;
  pushHistory();  // clearing is itself undoable
  setDocument({...currentDocument(), strokes: []});
}

function maskIsEmpty() {
  if (!state.strokes.length) return true;
  const data = state.mask.getContext("2d").getImageData(0, 0, state.mask.width, state.mask.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i]) return false;
  return true;
}

function setTool(tool) {
  state.tool = tool;
  for (const name of ["brush", "eraser"]) {
    const button = $(`tool-${name}`);
    button.classList.toggle("active", name === tool);
    button.setAttribute("aria-pressed", String(name === tool));
  }
  draw();
}

function setSize(size) {
  state.size = Math.max(2, Math.min(400, Math.round(size)));
  $("size").value = state.size;
  $("size-out").textContent = state.size;
  draw();
}

// --------------------------------------------------------------------------------------------------------------
// View: zoom, pan, drawing
// --------------------------------------------------------------------------------------------------------------
function resizeView() {
  const ratio = window.devicePixelRatio || 1;
  const rect = view.getBoundingClientRect();
  view.width = Math.max(1, Math.round(rect.width * ratio));
  view.height = Math.max(1, Math.round(rect.height * ratio));
  draw();
}

function fit() {
  if (!state.source) return;
  const ratio = window.devicePixelRatio || 1;
  const rect = view.getBoundingClientRect();
  const w = rect.width * ratio, h = rect.height * ratio;
  const scale = Math.min(w / state.source.width, h / state.source.height) * 0.96;
  state.view = {scale, tx: (w - state.source.width * scale) / 2, ty: (h - state.source.height * scale) / 2};
  draw();
}

function toImage(clientX, clientY) {
  const rect = view.getBoundingClientRect();
  const ratio = view.width / rect.width;
  const sx = (clientX - rect.left) * ratio, sy = (clientY - rect.top) * ratio;
  return [(sx - state.view.tx) / state.view.scale, (sy - state.view.ty) / state.view.scale, sx, sy];
}

function zoomAt(sx, sy, factor) {
  const v = state.view;
  const scale = Math.max(0.02, Math.min(32, v.scale * factor));
  const f = scale / v.scale;
  state.view = {scale, tx: sx - (sx - v.tx) * f, ty: sy - (sy - v.ty) * f};
  draw();
}

function draw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, view.width, view.height);
  const src = state.source;
  if (!src) return;
  const v = state.view;
  const w = src.width * v.scale, h = src.height * v.scale;
  ctx.imageSmoothingEnabled = v.scale < 2;  // see pixels when zoomed in
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(src.display, v.tx, v.ty, w, h);
  const result = state.result;
  let split = null;
  if (result) {
    // Before/after: the input left of the line, the result right of it.
    split = v.tx + w * state.compare;
    ctx.save();
    ctx.beginPath();
    ctx.rect(split, v.ty, v.tx + w - split, h);
    ctx.clip();
    ctx.drawImage(result.display, v.tx, v.ty, w, h);
    ctx.restore();
    if (state.showAlpha && result.alphaTint) {  // over the whole photo: visible wherever the slider is
      ctx.globalAlpha = 0.55;
      ctx.drawImage(result.alphaTint, v.tx, v.ty, w, h);
      ctx.globalAlpha = 1;
    }
  }
  if (state.maskVisible) {
    ctx.globalAlpha = 0.5;
    ctx.drawImage(state.tint, v.tx, v.ty, w, h);
    ctx.globalAlpha = 1;
  }
  if (split !== null) {
    const ratio = window.devicePixelRatio || 1;
    ctx.fillStyle = "#fff";
    ctx.fillRect(split - ratio, v.ty, 2 * ratio, h);
    label("before", split - 8 * ratio, v.ty + 8 * ratio, "right");
    label("after", split + 8 * ratio, v.ty + 8 * ratio, "left");
  }
  if (state.pointer && !state.panning && !state.spaceDown) {
    const [sx, sy] = state.pointer;
    ctx.beginPath();
    ctx.arc(sx, sy, Math.max(1, (state.size * v.scale) / 2), 0, 2 * Math.PI);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = state.tool === "eraser" ? "#7fd1ff" : "#fff";
    ctx.stroke();
  }
}

function label(text, x, y, align) {
  // Everything in device pixels: the box grows with the font on HiDPI screens.
  const ratio = window.devicePixelRatio || 1;
  const pad = 5 * ratio;
  ctx.font = `${12 * ratio}px system-ui, sans-serif`;
  ctx.textAlign = align;
  ctx.textBaseline = "top";
  const width = ctx.measureText(text).width + 2 * pad;
  ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
  ctx.fillRect(align === "right" ? x - width + pad : x - pad, y - 3 * ratio, width, 18 * ratio);
  ctx.fillStyle = "#fff";
  ctx.fillText(text, x, y);
}

// --------------------------------------------------------------------------------------------------------------
// Pointer and keyboard
// --------------------------------------------------------------------------------------------------------------
// Touch: one finger paints; a second finger turns the gesture into pinch-zoom and pan (the stroke the first
// finger began is dropped, not kept).
function pinchState() {
  const [a, b] = [...state.touches.values()];
  const [, , ax, ay] = toImage(a[0], a[1]);
  const [, , bx, by] = toImage(b[0], b[1]);
  return {mx: (ax + bx) / 2, my: (ay + by) / 2, dist: Math.max(1, Math.hypot(ax - bx, ay - by))};
}

function startPinch() {
  if (state.current) { state.current = null; replayStrokes(); }
  state.pinch = {...pinchState(), view: {...state.view}};
  draw();
}

function movePinch() {
  const now = pinchState(), start = state.pinch;
  const scale = Math.max(0.02, Math.min(32, start.view.scale * now.dist / start.dist));
  const f = scale / start.view.scale;
  // The image point under the fingers' starting midpoint follows the midpoint (pan), scaled about it (zoom).
  state.view = {scale, tx: now.mx - (start.mx - start.view.tx) * f, ty: now.my - (start.my - start.view.ty) * f};
  draw();
}

view.addEventListener("pointerdown", (event) => {
  if (!state.source) return;
  view.setPointerCapture(event.pointerId);
  if (event.pointerType === "touch") {
    state.touches.set(event.pointerId, [event.clientX, event.clientY]);
    if (state.touches.size >= 2) { startPinch(); return; }
  }
  const [ix, iy, sx, sy] = toImage(event.clientX, event.clientY);
  if (event.button === 1 || state.spaceDown) {
    state.panning = {sx, sy, tx: state.view.tx, ty: state.view.ty};
    document.body.classList.add("panning");
    return;
  }
  if (event.button !== 0 || state.busy) return;
  state.maskVisible = true;
  state.current = {tool: state.tool, size: state.size, points: [[ix, iy]]};
  paintStroke(state.mask.getContext("2d"), state.current, 1, MASK_COLOUR);
  paintStroke(state.tint.getContext("2d"), state.current, state.k, TINT_COLOUR);
  draw();
});

view.addEventListener("pointermove", (event) => {
  if (state.touches.has(event.pointerId)) {
    state.touches.set(event.pointerId, [event.clientX, event.clientY]);
    if (state.pinch && state.touches.size >= 2) { movePinch(); return; }
  }
  if (state.pinch) return;
  const [ix, iy, sx, sy] = toImage(event.clientX, event.clientY);
  state.pointer = [sx, sy];
  if (state.panning) {
    state.view.tx = state.panning.tx + sx - state.panning.sx;
    state.view.ty = state.panning.ty + sy - state.panning.sy;
  } else if (state.current) {
    state.current.points.push([ix, iy]);
    paintSegment(state.current);
  }
  draw();
});

function endPointer(event) {
  if (event && state.touches.delete(event.pointerId) && state.pinch) {
    if (state.touches.size < 2) state.pinch = null;
    if (!state.touches.size) state.pinch = null;
    return;
  }
  if (state.current) {
    pushHistory();
    state.strokes.push(state.current);
    state.current = null;
    updateButtons();
  }
  state.panning = null;
  document.body.classList.remove("panning");
  draw();
}

view.addEventListener("pointerup", endPointer);
view.addEventListener("pointercancel", endPointer);
view.addEventListener("pointerleave", () => { state.pointer = null; draw(); });

view.addEventListener("wheel", (event) => {
  if (!state.source) return;
  event.preventDefault();
  const [, , sx, sy] = toImage(event.clientX, event.clientY);
  zoomAt(sx, sy, Math.exp(-event.deltaY * 0.0015));
}, {passive: false});

window.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range" && event.target.type !== "checkbox") return;
  if (event.target instanceof HTMLSelectElement) return;
  const key = event.key.toLowerCase();
  const mod = event.ctrlKey || event.metaKey;
  if (mod && key === "z") {
    event.preventDefault();
    event.shiftKey ? redo() : undo();
  } else if (mod && key === "y") {
    event.preventDefault();
    redo();
  } else if (mod) {
    return;
  } else if (event.key === " ") {
    event.preventDefault();
    state.spaceDown = true;
    document.body.classList.add("panning");
    draw();
  } else if (key === "b") setTool("brush");
  else if (key === "e") setTool("eraser");
  else if (event.key === "[") setSize(state.size / 1.2);
  else if (event.key === "]") setSize(state.size * 1.2);
  else if (key === "f") fit();
  else if (key === "h") { state.maskVisible = !state.maskVisible; draw(); }
  else if (key === "a" && state.result) { $("alpha").checked = !$("alpha").checked; toggleAlpha(); }
  else if (event.key === "Enter" && !$("run").disabled) run();
});

window.addEventListener("keyup", (event) => {
  if (event.key === " ") {
    state.spaceDown = false;
    if (!state.panning) document.body.classList.remove("panning");
    draw();
  }
});

// --------------------------------------------------------------------------------------------------------------
// Running a removal: submit a job, follow its server-sent events, fetch the result
// --------------------------------------------------------------------------------------------------------------
function setStatus(text, kind) {
  $("status").textContent = text;
  if (kind === "error") document.body.dataset.state = "error";
}

function setProgress(value) {
  const bar = $("progress");
  if (value === null) { bar.hidden = true; return; }
  bar.hidden = false;
  if (value === undefined) bar.removeAttribute("value"); else bar.value = value;
}

function maskBlob() {
  // A binary PNG (255 = remove, 0 = keep) at the photo's full resolution: any painted alpha counts, so the
  // anti-aliased brush edges become 255, never grey.
  const { width, height } = state.mask;
  const out = makeCanvas(width, height);
  const octx = out.getContext("2d");
  const painted = state.mask.getContext("2d").getImageData(0, 0, width, height);
  const px = painted.data;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i + 3] ? 255 : 0;
    px[i] = px[i + 1] = px[i + 2] = v;
    px[i + 3] = 255;
  }
  octx.putImageData(painted, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// An uploaded mask: nonzero (or, with transparency, opaque) pixels are removed; it joins the history as a stroke.
async function openMask(file) {
  if (!state.source) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {resizeWidth: state.source.width, resizeHeight: state.source.height,
                                             resizeQuality: "pixelated"});
  } catch (_) {
    setStatus("This mask file is not an image the browser can read.", "error");
    return;
  }
  const canvas = makeCanvas(state.source.width, state.source.height);
  const c = canvas.getContext("2d");
  c.drawImage(bitmap, 0, 0);
  bitmap.close();
  const img = c.getImageData(0, 0, canvas.width, canvas.height);
  const px = img.data;
  let opaque = true;
  for (let i = 3; i < px.length; i += 4) if (px[i] !== 255) { opaque = false; break; }
  for (let i = 0; i < px.length; i += 4) {
    const on = opaque ? Math.max(px[i], px[i + 1], px[i + 2]) > 0 : px[i + 3] > 0;
    px[i] = px[i + 1] = px[i + 2] = 255;
    px[i + 3] = on ? 255 : 0;
  }
  c.putImageData(img, 0, 0);
  pushHistory();
  state.strokes.push({tool: "mask", canvas});
  state.maskVisible = true;
  replayStrokes();
  updateButtons();
  draw();
  setStatus(`Mask ${file.name || ""} loaded; press Remove.`);
}

async function* serverSentEvents(response) {
  // EventSource cannot send an Authorization header, so the stream is read with fetch and parsed here.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield {name, data: JSON.parse(data)};
    }
  }
}

function base64Blob(b64, type) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], {type});
}

async function tintedAlpha(blob, width, height) {
  const bitmap = await createImageBitmap(blob, {resizeWidth: width, resizeHeight: height});
  const canvas = makeCanvas(width, height);
  const c = canvas.getContext("2d");
  // Grey alpha -> cyan with that opacity.
  c.drawImage(bitmap, 0, 0);
  const img = c.getImageData(0, 0, width, height);
  for (let i = 0; i < img.data.length; i += 4) {
    const a = img.data[i];
    img.data[i] = 40; img.data[i + 1] = 220; img.data[i + 2] = 255; img.data[i + 3] = a;
  }
  c.putImageData(img, 0, 0);
  bitmap.close();
  return canvas;
}

function cancelRunningJob() {
  if (state.job) {
    api(`/jobs/${state.job}`, {method: "DELETE"}).catch(() => {});
    state.job = null;
  }
}

function optionalNumber(id) {
  const input = $(id);
  return !$(`${id}-label`).hidden && input.value !== "" ? input.value : null;
}

async function run() {
  if (!state.source || state.busy) return;
  if (maskIsEmpty()) {
    setStatus("Paint over the object to remove first (the mask is empty).", "error");
    return;
  }
  const generation = state.generation;
  const current = () => generation === state.generation;
  const before = currentDocument();
  state.busy = true;
  document.body.dataset.state = "running";
  updateButtons();
  setProgress(undefined);
  setStatus("Uploading…");
  const started = performance.now();
  const steps = requestedSteps();
  let jobId = null;
  try {
    const method = $("method").value;
    const makeForm = async () => {
      const form = new FormData();
      form.append("image", before.source.blob, before.source.name);
      form.append("mask", await maskBlob(), "mask.png");
      if (method) form.append("method", method);
      form.append("dilate", $("dilate").value);
      const refine = $("refine").value;
      if (refine) form.append("refine", refine);
      // The result comes back in the photo's own format (JPEG in, JPEG out); others become PNG.
      form.append("output_format", OUTPUT_FORMATS[before.source.blob.type] || "png");
      form.append("seed", optionalNumber("seed") ?? "0");
      if (!$("prompt-label").hidden && $("prompt").value.trim()) form.append("prompt", $("prompt").value.trim());
      if (!$("target-label").hidden && $("target").value.trim()) form.append("target", $("target").value.trim());
      const options = {};
      if (optionalNumber("steps") !== null) options.steps = Number(optionalNumber("steps"));
      if (optionalNumber("guidance") !== null) options.guidance = Number(optionalNumber("guidance"));
      if (Object.keys(options).length) form.append("options", JSON.stringify(options));
      return form;
    };
    const job = await (await submitWithRetry("/jobs", makeForm, current)).json();
    jobId = job.id;
    if (!current()) { api(`/jobs/${jobId}`, {method: "DELETE"}).catch(() => {}); return; }
    state.job = jobId;
    setStatus("Queued…");
    const events = await api(`/jobs/${job.id}/events`, {headers: {Accept: "text/event-stream"}});
    let outcome = null;
    for await (const event of serverSentEvents(events)) {
      if (!current()) return;  // a new photo was opened: this removal is not wanted any more
      if (event.name === "started") setStatus(`Running ${event.data.method}…`);
      else if (event.name === "progress") {
        const fraction = event.data.step / Math.max(1, event.data.total);
        setProgress(fraction);
        // Schedulers may count an extra step (51 of 51 for 50): show the steps the user asked for.
        setStatus(steps ? `Step ${Math.max(1, Math.round(fraction * steps))} / ${steps}`
                        : `${Math.round(fraction * 100)} %`);
      } else if (event.name === "done" || event.name === "error") { outcome = event; break; }
    }
    if (!current()) return;
    if (!outcome) throw new Error("the progress stream ended early");
    if (outcome.name === "error") throw new Error(outcome.data.message);
    const result = await (await api(`/jobs/${job.id}/result`)).json();
    const shown = await decodeResult(result);
    if (!current()) { shown.display.close(); return; }
    pushHistory();  // the document before the removal: Undo brings it back
    state.undo[state.undo.length - 1] = before;
    setDocument({...before, strokes: state.strokes.slice(), result: shown});
    state.maskVisible = false;  // show the result clean; painting again brings the mask back
    draw();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`${result.method}: done in ${seconds} s` + (result.unchanged ? " (nothing to remove)" : "") + ".");
    document.body.dataset.state = "done";
  } catch (error) {
    if (current() && !error.superseded) setStatus(`Failed: ${error.message}`, "error");
  } finally {
    if (state.job === jobId) state.job = null;
    state.busy = false;
    setProgress(null);
    updateButtons();
  }
}

async function decodeResult(result) {
  const type = {png: "image/png", jpeg: "image/jpeg", webp: "image/webp"}[result.image_format];
  const blob = base64Blob(result.image, type);
  const display = await displayBitmap(blob, result.width, result.height);
  const alphaBlob = result.alpha ? base64Blob(result.alpha, "image/png") : null;
  const alphaTint = alphaBlob ? await tintedAlpha(alphaBlob, display.width, display.height) : null;
  return {blob, format: result.image_format, display, alphaBlob, alphaTint, method: result.method};
}

// Bitmaps are never closed here: documents in the history may still show them.
function showResultState(result) {
  state.result = result;
  $("compare").disabled = !result;
  $("alpha").disabled = !(result && result.alphaTint);
  if (!result) {
    $("alpha").checked = false;
    state.showAlpha = false;
  }
}

function clearResult() {
  showResultState(null);
}

function toggleAlpha() {
  state.showAlpha = $("alpha").checked;
  draw();
}

async function iterate() {
  if (!state.result || state.busy) return;
  const { blob, format } = state.result;
  const name = `${stem(state.source.name)}.${format === "jpeg" ? "jpg" : format}`;
  const generation = state.generation;
  const source = await loadSource(blob, name);
  if (!source || generation !== state.generation) return;
  pushHistory();  // undoable: Undo brings back the photo, its strokes and its result
  setDocument({source, strokes: [], result: null});
  state.maskVisible = true;
  draw();
  setStatus("The result is the new input: paint the next object.");
}

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function updateButtons() {
  const has = !!state.source;
  $("undo").disabled = !state.undo.length || state.busy;
  $("redo").disabled = !state.redo.length || state.busy;
  $("open-mask").disabled = !has || state.busy;
  $("clear").disabled = !state.strokes.length;
  $("run").disabled = !has || state.busy || !state.strokes.length;
  $("iterate").disabled = !state.result || state.busy;
  $("download-result").disabled = !state.result;
  $("download-mask").disabled = !state.strokes.length;
}

// --------------------------------------------------------------------------------------------------------------
// Wiring
// --------------------------------------------------------------------------------------------------------------
$("open").addEventListener("click", () => $("file").click());
$("open-mask").addEventListener("click", () => $("mask-file").click());
$("mask-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) openMask(file);
  event.target.value = "";
});
$("method").addEventListener("change", showMethodOptions);
$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) openImage(file, file.name);
  event.target.value = "";
});
$("tool-brush").addEventListener("click", () => setTool("brush"));
$("tool-eraser").addEventListener("click", () => setTool("eraser"));
$("size").addEventListener("input", (event) => setSize(Number(event.target.value)));
$("dilate").addEventListener("input", (event) => { $("dilate-out").textContent = event.target.value; });
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", clearMask);
$("fit").addEventListener("click", fit);
$("run").addEventListener("click", run);
$("compare").addEventListener("input", (event) => { state.compare = Number(event.target.value) / 100; draw(); });
$("alpha").addEventListener("change", toggleAlpha);
$("iterate").addEventListener("click", iterate);
$("download-result").addEventListener("click", () => {
  const r = state.result;
  download(r.blob, `${stem(state.source.name)}-erased.${r.format === "jpeg" ? "jpg" : r.format}`);
});
$("download-mask").addEventListener("click", async () => {
  download(await maskBlob(), `${stem(state.source.name)}-mask.png`);
});
$("token").addEventListener("change", (event) => {
  sessionStorage.setItem("erasekit-token", event.target.value.trim());
  loadMethods();
});

for (const type of ["dragenter", "dragover"]) {
  window.addEventListener(type, (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
}
window.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
window.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
  if (file) openImage(file, file.name);
});
window.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) openImage(item.getAsFile(), "pasted.png");
});

new ResizeObserver(resizeView).observe(view);
setSize(state.size);
loadMethods();
