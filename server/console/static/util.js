// Helpers shared by the console's panels: API calls, elements, CSV, probability bars, plots.

export class ApiError extends Error {}

// The message an error body carries (hfchain's {"error": {"message"}}, FastAPI's {"detail"}, LangServe's).
export function messageOf(status, body) {
  if (body && typeof body === "object") {
    const error = body.error;
    if (error && typeof error === "object" && error.message) return error.message;
    if (typeof error === "string") return body.message ? `${error}: ${body.message}` : error;
    const detail = body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
    }
    if (body.message) return body.message;
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 500);
  return `the server answered ${status} with no message`;
}

// A response body as JSON when it parses, else its text.
function parseBody(text) {
  try { return text ? JSON.parse(text) : null; } catch { return text; }
}

// The ApiError for a failed response, with the API's own message.
export function apiError(status, text) {
  return new ApiError(`${status}: ${messageOf(status, parseBody(text))}`);
}

// A JSON call to hfchain; throws ApiError with the API's own message on any status >= 400.
export async function api(path, { method = "GET", json, form, signal } = {}) {
  const options = { method, signal, headers: {} };
  if (json !== undefined) {
    options.body = JSON.stringify(json);
    options.headers["content-type"] = "application/json";
  } else if (form) {
    options.body = form;
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`could not reach the server (${error.message}): is hfchain still running?`);
  }
  const text = await response.text();
  if (!response.ok) throw apiError(response.status, text);
  return parseBody(text);
}

// An upload with progress (fetch cannot report it): resolves to the JSON body, rejects with ApiError.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    request.onerror = () => reject(new ApiError("the upload failed: is hfchain still running?"));
    request.onload = () => {
      if (request.status >= 400) reject(apiError(request.status, request.responseText));
      else resolve(parseBody(request.responseText));
    };
    request.send(form);
  });
}

// el("div", {class: "x", onclick: f}, "text", child, [more]) -> an element.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function card(title, ...children) {
  return el("div", { class: "card" }, el("h2", {}, title), ...children);
}

// Shows `error` in `box` (the API's message), or clears it when error is null.
export function showError(box, error) {
  box.replaceChildren();
  box.hidden = !error;
  if (error) box.append(error.message || String(error));
}

export function errorBox() {
  return el("div", { class: "error", role: "alert", hidden: true });
}

// RFC 4180 CSV: quoted fields, doubled quotes, commas and newlines inside quotes, CRLF.
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((f) => f.trim() !== ""));
}

// Every label's probability as a bar, highest first.
export function probabilityBars(scores) {
  const sorted = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  return el("div", { class: "bars", role: "list" },
    sorted.map(([label, p]) => [
      el("span", { role: "listitem" }, label),
      el("div", { class: "bar", style: `width: ${(100 * p).toFixed(1)}%`, title: p.toFixed(4) }),
      el("span", { class: "value" }, p.toFixed(4)),
    ]));
}

// A small line plot of `points` ([t, value]) as inline SVG.
export function sparkline(points, { width = 300, height = 90 } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const axis = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, y1: height - 1, x2: width, y2: height - 1, stroke: "#d7dbe3" })
    .forEach(([k, v]) => axis.setAttribute(k, v));
  svg.append(axis);
  if (points.length > 1) {
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
    const top = Math.max(...points.map((p) => p[1]), 1e-9);
    const xy = points.map(([t, v]) =>
      `${(((t - t0) / (t1 - t0 || 1)) * width).toFixed(1)},${(height - 4 - (v / top) * (height - 8)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    Object.entries({ points: xy.join(" "), fill: "none", stroke: "#2f5bd3", "stroke-width": 2 })
      .forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  return svg;
}
