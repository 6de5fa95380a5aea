// Classifiers: train from a labelled CSV (columns picked from a preview) with live progress, then the card
// (metrics per label, confusion matrix) and a box to try texts, on the server or in this browser.
import { api, card, el, errorBox, parseCsv, probabilityBars, showError } from "./util.js";
import { browserDevice, classifyInBrowser, forget } from "./inbrowser.js";

export function classifiersPanel(root) {
  const listing = el("ul", { id: "classifier-list" });
  const errors = errorBox();
  const details = el("div", { class: "card wide", id: "classifier-card", hidden: true });

  async function refresh(open) {
    try {
      const { classifiers, trainings } = await api("/classifiers");
      listing.replaceChildren(
        ...classifiers.map((c) => el("li", {},
          el("button", { class: "secondary", type: "button", onclick: () => show(c.name) }, c.name), " ",
          el("span", { class: "muted" }, `accuracy ${c.metrics.accuracy.toFixed(3)} · ${c.labels.length} labels`))),
        ...trainings.map((t) => el("li", { class: "muted" }, `${t.name}: ${t.status}`)));
      if (!classifiers.length && !trainings.length) listing.append(el("li", { class: "muted" }, "None yet."));
      showError(errors, null);
      if (open) await show(open);
    } catch (error) { showError(errors, error); }
  }

  async function show(name) {
    try {
      const found = await api(`/classifiers/${encodeURIComponent(name)}`);
      forget(name);
      classifierCard(details, found, () => { details.hidden = true; refresh(); });
    } catch (error) { showError(errors, error); }
  }

  root.append(trainCard(refresh), card("Trained classifiers", errors, listing), details);
  refresh();
}

function trainCard(trained) {
  const errors = errorBox();
  const file = el("input", { type: "file", id: "train-file", accept: ".csv,text/csv" });
  const preview = el("div", { class: "scroll", id: "train-preview" });
  const textColumn = el("select", { id: "text-column" });
  const labelColumn = el("select", { id: "label-column" });
  const name = el("input", { type: "text", id: "classifier-name", placeholder: "e.g. sentiment", autocomplete: "off" });
  const epochs = el("input", { type: "number", id: "epochs", value: 3, min: 0.5, max: 20, step: 0.5 });
  const button = el("button", { class: "primary", type: "submit", disabled: true }, "Train");
  const bar = el("progress", { id: "train-progress", max: 1, value: 0, hidden: true, "aria-label": "Training progress" });
  const status = el("p", { class: "muted", id: "train-status", "aria-live": "polite" });

  file.addEventListener("change", async () => {
    showError(errors, null);
    const chosen = file.files[0];
    if (!chosen) return;
    const rows = parseCsv(await chosen.text());
    if (rows.length < 2) return showError(errors, new Error(`${chosen.name}: no rows under a header line`));
    const [header, ...body] = rows;
    const options = () => header.map((h) => el("option", { value: h }, h));
    textColumn.replaceChildren(...options());
    labelColumn.replaceChildren(...options());
    textColumn.value = header.find((h) => /text|review|sentence|body/i.test(h)) || header[0];
    labelColumn.value = header.find((h) => /label|class|category|sentiment/i.test(h)) || header[header.length - 1];
    if (!name.value) name.value = chosen.name.replace(/\.csv$/i, "").toLowerCase().replace(/[^a-z0-9_-]+/g, "-");
    preview.replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, header.map((h) => el("th", {}, h)))),
      el("tbody", {}, body.slice(0, 5).map((r) => el("tr", {}, header.map((_, i) => el("td", {}, r[i] ?? "")))))),
      el("p", { class: "muted" }, `${body.length} rows; the first 5 shown.`));
    button.disabled = false;
  });

  async function train(event) {
    event.preventDefault();
    const form = new FormData();
    form.append("file", file.files[0]);
    form.append("name", name.value.trim());
    form.append("text_column", textColumn.value);
    form.append("label_column", labelColumn.value);
    form.append("epochs", epochs.value);
    form.append("export", "onnx"); // so the card can run it in this browser
    button.disabled = true;
    showError(errors, null);
    try {
      const started = await api("/classifiers", { method: "POST", form });
      bar.hidden = false; bar.value = 0;
      await follow(started.name);
      trained(started.name);
    } catch (error) {
      showError(errors, error);
      status.textContent = "";
    } finally { button.disabled = false; }
  }

  async function follow(classifier) {
    for (;;) {
      const state = await api(`/classifiers/${encodeURIComponent(classifier)}`);
      if (state.status === "done") {
        bar.value = bar.max;
        status.textContent = `Trained: accuracy ${state.metrics.accuracy.toFixed(3)} on ${state.data.eval_rows} held-out rows.`;
        return;
      }
      if (state.status === "failed") throw new Error(`training failed: ${state.error || "see the server's log"}`);
      const p = state.progress || {};
      if (p.max_steps) { bar.max = p.max_steps; bar.value = p.step || 0; }
      const parts = [p.stage === "exporting" ? "exporting to ONNX" : p.epoch !== undefined ? `epoch ${p.epoch}` : "starting"];
      if (p.loss != null) parts.push(`loss ${p.loss.toFixed(3)}`);
      if (p.eval_accuracy != null) parts.push(`evaluation accuracy ${p.eval_accuracy.toFixed(3)}`);
      status.textContent = parts.join(" · ");
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  return el("div", { class: "card" }, el("h2", {}, "Train a classifier"), errors,
    el("form", { onsubmit: train },
      el("label", { for: "train-file" }, "Labelled CSV (a header line, a text column and a label column)"), file,
      preview,
      el("div", { class: "row" },
        el("div", {}, el("label", { for: "text-column" }, "Text column"), textColumn),
        el("div", {}, el("label", { for: "label-column" }, "Label column"), labelColumn)),
      el("div", { class: "row" },
        el("div", {}, el("label", { for: "classifier-name" }, "Name"), name),
        el("div", {}, el("label", { for: "epochs" }, "Epochs"), epochs)),
      button, bar, status));
}

function classifierCard(box, found, deleted) {
  const labels = found.labels, metrics = found.metrics;
  const exported = Boolean(found.onnx);
  const errors = errorBox();
  const text = el("textarea", { id: "try-text", placeholder: "A text to classify" });
  const local = el("input", { type: "checkbox", id: "in-browser", role: "switch", disabled: !exported });
  const result = el("div", { id: "try-result", "aria-live": "polite" });
  const where = el("p", { class: "muted", id: "try-where" });

  async function classify(event) {
    event.preventDefault();
    showError(errors, null);
    try {
      const started = performance.now();
      let scores, ran;
      if (local.checked) {
        scores = await classifyInBrowser(found.name, text.value);
        ran = `in this browser (${await browserDevice()})`;
      } else {
        const { output } = await api("/classify/invoke",
          { method: "POST", json: { input: { text: text.value, model: found.name } } });
        scores = output.scores;
        ran = "on the server";
      }
      result.replaceChildren(probabilityBars(scores));
      where.textContent = `Ran ${ran} in ${(performance.now() - started).toFixed(0)} ms.`;
    } catch (error) { showError(errors, error); }
  }

  async function remove() {
    if (!confirm(`Delete the classifier ${found.name}?`)) return;
    try {
      await api(`/classifiers/${encodeURIComponent(found.name)}`, { method: "DELETE" });
      deleted();
    } catch (error) { showError(errors, error); }
  }

  const perLabel = el("table", { id: "per-label" },
    el("thead", {}, el("tr", {}, ["label", "precision", "recall", "F1", "support"].map((h) => el("th", {}, h)))),
    el("tbody", {}, labels.map((label) => {
      const m = metrics.per_label[label] || {};
      return el("tr", {}, el("td", {}, label), ["precision", "recall", "f1"].map((k) =>
        el("td", {}, m[k] != null ? m[k].toFixed(3) : "–")), el("td", {}, m.support ?? "–"));
    })));

  box.hidden = false;
  box.replaceChildren(
    el("h2", {}, `Classifier ${found.name}`),
    el("p", { class: "muted" }, `accuracy ${metrics.accuracy.toFixed(3)} on ${found.data.eval_rows} held-out rows · `,
      `${found.method} on ${found.base} · served by ${found.runtime} · trained ${found.trained_at}`),
    el("div", { class: "row top" },
      el("div", { class: "scroll" }, el("h3", {}, "Per label"), perLabel),
      el("div", { class: "scroll" }, el("h3", {}, "Confusion matrix"), confusionMatrix(labels, metrics.confusion_matrix))),
    el("h3", {}, "Try it"), errors,
    el("form", { onsubmit: classify },
      el("label", { for: "try-text" }, "Text"), text,
      el("label", { class: "switch", for: "in-browser" }, local, "Run in this browser (transformers.js)"),
      exported ? null : el("p", { class: "muted" },
        "This classifier has no ONNX export: train it here (the console exports it) or run ",
        el("code", {}, `hfchain export-onnx ${found.name}`), "."),
      el("button", { class: "primary", type: "submit" }, "Classify"),
      el("button", { class: "secondary", type: "button", onclick: remove }, "Delete")),
    result, where);
}

// Rows: the true label; columns: the predicted one; cells shaded by their share of the row.
function confusionMatrix(labels, matrix) {
  const ns = "http://www.w3.org/2000/svg";
  const cell = 46, left = 90, top = 70, size = labels.length;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("id", "confusion-matrix");
  svg.setAttribute("role", "img");
  const wide = left + cell * size + 70; // room for the last rotated label
  svg.setAttribute("viewBox", `0 0 ${wide} ${top + cell * size + 4}`);
  svg.setAttribute("style", `max-width: ${wide}px; width: 100%`);
  const title = document.createElementNS(ns, "title");
  title.textContent = "Confusion matrix: rows are the true labels, columns the predicted ones";
  svg.append(title);
  const text = (x, y, content, attributes = {}) => {
    const t = document.createElementNS(ns, "text");
    Object.entries({ x, y, "font-size": 12, ...attributes }).forEach(([k, v]) => t.setAttribute(k, v));
    t.textContent = content;
    svg.append(t);
  };
  text(left, 14, "predicted →", { fill: "#5b6475" });
  labels.forEach((label, j) => text(left + cell * j + cell / 2, top - 8, label.slice(0, 10),
    { "text-anchor": "start", transform: `rotate(-35 ${left + cell * j + cell / 2} ${top - 8})` }));
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    text(left - 6, top + cell * i + cell / 2 + 4, labels[i].slice(0, 12), { "text-anchor": "end" });
    row.forEach((count, j) => {
      const rect = document.createElementNS(ns, "rect");
      const share = count / total;
      Object.entries({ x: left + cell * j, y: top + cell * i, width: cell - 2, height: cell - 2, rx: 3,
        fill: i === j ? `rgba(30,123,60,${0.12 + 0.8 * share})` : `rgba(179,38,30,${share ? 0.12 + 0.8 * share : 0.04})`,
        class: "cell", "data-count": count })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      svg.append(rect);
      text(left + cell * j + cell / 2 - 1, top + cell * i + cell / 2 + 4, String(count),
        { "text-anchor": "middle", fill: share > 0.6 ? "#fff" : "#1d2330" });
    });
  });
  return svg;
}
