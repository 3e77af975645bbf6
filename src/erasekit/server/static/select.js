// erasekit web UI: click-to-select and find-by-text (loaded after app.js).
//
// Select tool: a click on the photo marks the object (Shift+click or right-click: "not the object"); the server
// embeds the photo once with the click model, SAM 2 or SAM (/select/embed) and answers each click with a mask
// from the mask decoder only (/select/click). Find: a phrase becomes a mask through SAM 3 or Grounding DINO +
// SAM 2 (/select/text).
// Masks arrive as *layers* in the brush history: tinted like painted strokes, editable with the brush and the
// eraser, undone with Ctrl+Z, and sent by Remove like any stroke. Further clicks refine the newest selection
// (one undo step) until a brush stroke, Find or Escape starts a new one.
//
// What this file uses from app.js (global functions and the `state` object): state.{source, strokes, mask,
// tint, k, tool, busy}, pushHistory, paintStroke, replayStrokes, updateButtons, draw, toImage, api, setStatus,
// makeCanvas.
"use strict";

(() => {
  const selection = {blob: null, id: null, points: [], labels: [], layer: null, pending: null};

  // ---- toolbar: a Select tool beside Brush/Eraser, and a Find box --------------------------------------------
  const tools = document.getElementById("tool-eraser").parentElement;
  const selectButton = document.createElement("button");
  selectButton.id = "tool-select";
  selectButton.className = "tool";
  selectButton.title = "Select (S): click the object; Shift+click or right-click what is not the object";
  selectButton.textContent = "Select";
  selectButton.setAttribute("aria-pressed", "false");
  tools.insertBefore(selectButton, document.getElementById("tool-eraser").nextSibling);

  const findGroup = document.createElement("div");
  findGroup.className = "group";
  findGroup.innerHTML = '<input id="find-text" type="text" size="14" placeholder="find: the cup" ' +
    'title="Describe what to remove, then press Enter"><button id="find" title="Select what the words name">Find</button>';
  tools.parentElement.insertBefore(findGroup, tools.nextSibling);

  function setSelectTool(on) {
    if (on) state.tool = "select";
    selectButton.classList.toggle("active", on);
    selectButton.setAttribute("aria-pressed", String(on));
    for (const name of ["brush", "eraser"]) {
      const button = document.getElementById(`tool-${name}`);
      if (on) { button.classList.remove("active"); button.setAttribute("aria-pressed", "false"); }
    }
    draw();
  }
  selectButton.addEventListener("click", () => setSelectTool(true));
  for (const name of ["brush", "eraser"]) {
    document.getElementById(`tool-${name}`).addEventListener("click", () => setSelectTool(false));
  }

  // ---- mask layers in the stroke history -----------------------------------------------------------------------
  const paintBrush = paintStroke;
  window.paintStroke = function (context, stroke, k, colour) {
    if (stroke.tool !== "layer") return paintBrush(context, stroke, k, colour);
    if (!stroke.tinted || stroke.tintColour !== colour) {
      const tinted = makeCanvas(stroke.canvas.width, stroke.canvas.height);
      const t = tinted.getContext("2d");
      t.fillStyle = colour;
      t.fillRect(0, 0, tinted.width, tinted.height);
      t.globalCompositeOperation = "destination-in";
      t.drawImage(stroke.canvas, 0, 0);
      stroke.tinted = tinted;
      stroke.tintColour = colour;
    }
    context.save();
    context.globalCompositeOperation = "source-over";
    context.drawImage(stroke.tinted, 0, 0, stroke.canvas.width * k, stroke.canvas.height * k);
    context.restore();
  };

  async function maskLayer(blob) {
    // The server's 8-bit PNG (255 = selected) -> an opaque-where-selected canvas at the photo's size.
    const bitmap = await createImageBitmap(blob);
    const canvas = makeCanvas(state.source.width, state.source.height);
    const c = canvas.getContext("2d");
    c.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const img = c.getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < img.data.length; i += 4) {
      const on = img.data[i] > 127;
      img.data[i] = img.data[i + 1] = img.data[i + 2] = 255;
      img.data[i + 3] = on ? 255 : 0;
    }
    c.putImageData(img, 0, 0);
    return canvas;
  }

  function showLayer(canvas, refine) {
    const last = state.strokes[state.strokes.length - 1];
    if (refine && selection.layer && last === selection.layer) {
      selection.layer.canvas = canvas;  // the newest selection, refined: still one undo step
      selection.layer.tinted = null;
    } else {
      pushHistory();  // app.js: one undo step per new layer, in the same history as strokes and removals
      selection.layer = {tool: "layer", canvas};
      state.strokes.push(selection.layer);
    }
    state.maskVisible = true;
    replayStrokes();
    updateButtons();
    draw();
  }

  function newSelection() {
    selection.points = [];
    selection.labels = [];
    selection.layer = null;
  }

  // ---- server calls --------------------------------------------------------------------------------------------
  async function embedded() {
    if (selection.blob === state.source.blob && selection.id) return selection.id;
    if (selection.pending && selection.blob === state.source.blob) return selection.pending;
    selection.blob = state.source.blob;
    selection.id = null;
    newSelection();
    selection.pending = (async () => {
      setStatus("Preparing the photo for selection…");
      const response = await api("/select/embed", {method: "POST", body: state.source.blob});
      const body = await response.json();
      selection.id = body.id;
      return body.id;
    })();
    try { return await selection.pending; } finally { selection.pending = null; }
  }

  async function postJSON(path, payload) {
    return api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload)});
  }

  async function click(x, y, label) {
    try {
      const id = await embedded();
      const last = state.strokes[state.strokes.length - 1];
      if (!selection.layer || last !== selection.layer) newSelection();
      selection.points.push([x, y]);
      selection.labels.push(label);
      const response = await postJSON("/select/click", {id, points: selection.points, labels: selection.labels});
      showLayer(await maskLayer(await response.blob()), selection.layer !== null);
      setStatus(`Selected with ${selection.points.length} click(s). Shift+click to exclude; paint to adjust; Remove.`);
    } catch (error) {
      selection.points.pop();
      selection.labels.pop();
      setStatus(`Select: ${error.message}`, "error");
    }
  }

  async function find() {
    const prompt = document.getElementById("find-text").value.trim();
    if (!state.source || !prompt) return;
    try {
      const id = await embedded();
      setStatus(`Finding “${prompt}”…`);
      const response = await postJSON("/select/text", {id, prompt});
      newSelection();
      showLayer(await maskLayer(await response.blob()), false);
      document.getElementById("find-text").blur();  // the shortcuts (Ctrl+Z, Enter) work again
      setStatus(`Found ${response.headers.get("X-Erasekit-Instances") || "some"} instance(s) of “${prompt}”; paint to adjust, then Remove.`);
    } catch (error) {
      setStatus(`Find: ${error.message}`, "error");
    }
  }

  // ---- events: a capturing listener takes clicks away from the brush while the Select tool is on --------------
  view.addEventListener("pointerdown", (event) => {
    if (state.tool !== "select" || !state.source || state.spaceDown || event.button === 1) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    if (state.busy || (event.button !== 0 && event.button !== 2)) return;
    const [ix, iy] = toImage(event.clientX, event.clientY);
    if (ix < 0 || iy < 0 || ix >= state.source.width || iy >= state.source.height) return;
    click(ix, iy, event.button === 2 || event.shiftKey ? 0 : 1);
  }, {capture: true});
  view.addEventListener("contextmenu", (event) => { if (state.tool === "select") event.preventDefault(); });
  document.getElementById("find").addEventListener("click", find);
  document.getElementById("find-text").addEventListener("keydown", (event) => {
    event.stopPropagation();  // typing here is not a keyboard shortcut
    if (event.key === "Enter") find();
  });
  window.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type === "text") return;
    const key = event.key.toLowerCase();
    if (key === "s" && !event.ctrlKey && !event.metaKey) setSelectTool(true);
    else if (key === "b" || key === "e") setSelectTool(false);
    else if (key === "escape") newSelection();
  });
})();
