// The endpoint list of /docs and /redoc, built from /openapi.json (no CDN, so it works offline).
"use strict";
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  const list = document.getElementById("endpoints");
  list.textContent = "";
  for (const [path, methods] of Object.entries(spec.paths || {})) {
    for (const [verb, op] of Object.entries(methods)) {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = `${verb.toUpperCase()} ${path}`;
      item.append(code, ` — ${op.summary || ""}`);
      list.append(item);
    }
  }
}).catch(() => {
  document.getElementById("endpoints").textContent = "Could not load /openapi.json.";
});
