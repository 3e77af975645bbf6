// erasekit web UI: plain JavaScript and Canvas, no build step.
//
// Coordinates: everything the user paints is stored in *image* pixels of the full-resolution photo (the mask
// canvas is the photo's size), so a large photo is displayed downscaled while the mask and the removal stay full
// resolution. The view maps image -> screen with `screen = image * view.scale + view.t`.
// Undo/redo keep strokes as vectors (tool, size, points) and replay them, which costs no full-size bitmaps.
"use strict";

const API = "/api/v1";
const DISPLAY_MAX_SIDE = 2048; // photos larger than this are shown from a downscaled copy

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");

const state = {
  source: null,        // {blob, name, width, height, display: ImageBitmap}
  mask: null,          // full-resolution canvas: painted pixels opaque
  tint: null,          // display-resolution canvas: the mask drawn in the overlay colour
  k: 1,                // display bitmap pixels per image pixel
  strokes: [],
  redo: [],
  current: null,       // the stroke being painted
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
    throw error;
  }
  return response;
}

async function loadMethods() {
  try {
    const health = await (await fetch(API + "/health")).json();
    $("token-group").hidden = !health.auth;
    $("token").value = sessionStorage.getItem("erasekit-token") || "";
    const data = await (await api("/methods")).json();
    const select = $("method");
    select.replaceChildren();
    state.defaultMethod = data.default;
    if (data.default === "auto") select.append(new Option("auto (best available)", "auto"));
    for (const m of data.methods) {
      if (!m.available) continue;  // only what can run here
      const option = new Option(m.name, m.name);
      option.title = m.description;
      select.append(option);
    }
    select.value = data.default;
    const refine = $("refine");
    refine.replaceChildren(new Option("none", ""));
    for (const r of data.refiners || []) {
      const option = new Option(r.name, r.name);
      option.title = r.description;
      refine.append(option);
    }
    setStatus(`${select.options.length} method(s) available.`);
  } catch (error) {
    setStatus(`Cannot list methods: ${error.message}`, "error");
  }
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

async function openImage(blob, name, {keepView = false} = {}) {
  let full;
  try {
    full = await createImageBitmap(blob, {imageOrientation: "from-image"});
  } catch (_) {
    setStatus("This file is not an image the browser can show.", "error");
    return;
  }
  const width = full.width, height = full.height;
  full.close();
  const display = await displayBitmap(blob, width, height);
  state.source = {blob, name: name || "image", width, height, display};
  state.k = display.width / width;
  state.mask = makeCanvas(width, height);
  state.tint = makeCanvas(display.width, display.height);
  state.strokes = [];
  state.redo = [];
  state.maskVisible = true;
  clearResult();
  document.body.dataset.state = "ready";
  $("info").textContent = `${width}×${height}` + (state.k < 1 ? ` (shown at ${Math.round(state.k * 100)} %)` : "");
  if (!keepView) fit();
  updateButtons();
  draw();
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
  if (!state.strokes.length) return;
  state.redo.push(state.strokes.pop());
  replayStrokes();
  updateButtons();
  draw();
}

function redo() {
  if (!state.redo.length) return;
  state.strokes.push(state.redo.pop());
  replayStrokes();
  updateButtons();
  draw();
}

function clearMask() {
  if (!state.strokes.length) return;
  // Clearing is itself undoable: the strokes move to the redo stack in order.
  while (state.strokes.length) state.redo.push(state.strokes.pop());
  replayStrokes();
  updateButtons();
  draw();
}

function maskIsEmpty() {
  const strokes = state.strokes;
  if (!strokes.length) return true;
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
    if (state.showAlpha && result.alphaTint) {
      ctx.globalAlpha = 0.55;
      ctx.drawImage(result.alphaTint, v.tx, v.ty, w, h);
    }
    ctx.restore();
  }
  if (state.maskVisible) {
    ctx.globalAlpha = 0.5;
    ctx.drawImage(state.tint, v.tx, v.ty, w, h);
    ctx.globalAlpha = 1;
  }
  if (split !== null) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(split - 1, v.ty, 2, h);
    label("before", split - 8, v.ty + 8, "right");
    label("after", split + 8, v.ty + 8, "left");
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
  ctx.font = `${12 * (window.devicePixelRatio || 1)}px system-ui, sans-serif`;
  ctx.textAlign = align;
  ctx.textBaseline = "top";
  const width = ctx.measureText(text).width + 10;
  ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
  ctx.fillRect(align === "right" ? x - width + 5 : x - 5, y - 3, width, 20);
  ctx.fillStyle = "#fff";
  ctx.fillText(text, x, y);
}

// --------------------------------------------------------------------------------------------------------------
// Pointer and keyboard
// --------------------------------------------------------------------------------------------------------------
view.addEventListener("pointerdown", (event) => {
  if (!state.source) return;
  view.setPointerCapture(event.pointerId);
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

function endPointer() {
  if (state.current) {
    state.strokes.push(state.current);
    state.redo = [];
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
  // A binary greyscale-looking PNG (white = remove) from the painted alpha, at the photo's full resolution.
  const { width, height } = state.mask;
  const out = makeCanvas(width, height);
  const octx = out.getContext("2d");
  octx.fillStyle = "#000";
  octx.fillRect(0, 0, width, height);
  octx.drawImage(state.mask, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
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

async function run() {
  if (!state.source || state.busy) return;
  if (maskIsEmpty()) {
    setStatus("Paint over the object to remove first (the mask is empty).", "error");
    return;
  }
  state.busy = true;
  document.body.dataset.state = "running";
  updateButtons();
  setProgress(undefined);
  setStatus("Uploading…");
  const started = performance.now();
  try {
    const form = new FormData();
    form.append("image", state.source.blob, state.source.name);
    form.append("mask", await maskBlob(), "mask.png");
    const method = $("method").value;
    if (method) form.append("method", method);
    form.append("dilate", $("dilate").value);
    const refine = $("refine").value;
    if (refine) form.append("refine", refine);
    form.append("seed", "0");
    const job = await (await api("/jobs", {method: "POST", body: form})).json();
    setStatus("Queued…");
    const events = await api(`/jobs/${job.id}/events`, {headers: {Accept: "text/event-stream"}});
    let outcome = null;
    for await (const event of serverSentEvents(events)) {
      if (event.name === "started") setStatus(`Running ${event.data.method}…`);
      else if (event.name === "progress") {
        setProgress(event.data.step / Math.max(1, event.data.total));
        setStatus(`Step ${event.data.step} / ${event.data.total}`);
      } else if (event.name === "done" || event.name === "error") { outcome = event; break; }
    }
    if (!outcome) throw new Error("the progress stream ended early");
    if (outcome.name === "error") throw new Error(outcome.data.message);
    const result = await (await api(`/jobs/${job.id}/result`)).json();
    await showResult(result);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`${result.method}: done in ${seconds} s` + (result.unchanged ? " (nothing to remove)" : "") + ".");
    document.body.dataset.state = "done";
  } catch (error) {
    setStatus(`Failed: ${error.message}`, "error");
  } finally {
    state.busy = false;
    setProgress(null);
    updateButtons();
  }
}

async function showResult(result) {
  clearResult();
  const type = {png: "image/png", jpeg: "image/jpeg", webp: "image/webp"}[result.image_format];
  const blob = base64Blob(result.image, type);
  const display = await displayBitmap(blob, result.width, result.height);
  const alphaBlob = result.alpha ? base64Blob(result.alpha, "image/png") : null;
  const alphaTint = alphaBlob ? await tintedAlpha(alphaBlob, display.width, display.height) : null;
  state.result = {blob, format: result.image_format, display, alphaBlob, alphaTint, method: result.method};
  state.maskVisible = false;  // show the result clean; painting again brings the mask back
  $("compare").disabled = false;
  $("alpha").disabled = !alphaTint;
  draw();
}

function clearResult() {
  if (state.result) state.result.display.close();
  state.result = null;
  $("compare").disabled = true;
  $("alpha").disabled = true;
  $("alpha").checked = false;
  state.showAlpha = false;
}

function toggleAlpha() {
  state.showAlpha = $("alpha").checked;
  draw();
}

async function iterate() {
  if (!state.result) return;
  const { blob, format } = state.result;
  const name = `${stem(state.source.name)}.${format === "jpeg" ? "jpg" : format}`;
  await openImage(blob, name, {keepView: true});
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
  $("undo").disabled = !state.strokes.length;
  $("redo").disabled = !state.redo.length;
  $("clear").disabled = !state.strokes.length;
  $("run").disabled = !has || state.busy || !state.strokes.length;
  $("iterate").disabled = !state.result || state.busy;
  $("download-result").disabled = !state.result;
  $("download-mask").disabled = !state.strokes.length;
}

// --------------------------------------------------------------------------------------------------------------
// Wiring
// --------------------------------------------------------------------------------------------------------------
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
