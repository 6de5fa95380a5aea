// Documents: collections, drag-and-drop upload with progress (bytes sent, then chunks stored), search with
// the query's words marked in each hit, and a question answered with clickable citations.
import { api, card, el, errorBox, showError, upload } from "./util.js";

export function documentsPanel(root) {
  const state = { name: null };
  const errors = errorBox();
  const picker = el("select", { id: "collection", "aria-label": "Collection" });
  const summary = el("p", { class: "muted", id: "collection-summary" });
  const newName = el("input", { type: "text", id: "new-collection", placeholder: "e.g. handbook", autocomplete: "off" });

  async function refresh(select) {
    try {
      const { collections } = await api("/collections");
      picker.replaceChildren(...collections.map((c) => el("option", { value: c.name }, c.name)));
      if (select) picker.value = select;
      state.name = picker.value || null;
      describe(collections.find((c) => c.name === state.name));
      showError(errors, null);
    } catch (error) { showError(errors, error); }
  }

  function describe(found) {
    summary.textContent = found
      ? `${count(found.documents, "document")}, ${count(found.chunks, "chunk")}, ${count(found.tokens, "token")} (${found.store})`
      : "No collection yet: create one below.";
  }

  async function create(event) {
    event.preventDefault();
    try {
      await api("/collections", { method: "POST", json: { name: newName.value.trim() } });
      await refresh(newName.value.trim());
      newName.value = "";
    } catch (error) { showError(errors, error); }
  }
  picker.addEventListener("change", () => refresh(picker.value));

  root.append(
    el("div", { class: "card" }, el("h2", {}, "Collections"), errors,
      el("label", { for: "collection" }, "Collection"), picker, summary,
      el("form", { onsubmit: create },
        el("label", { for: "new-collection" }, "New collection"),
        el("div", { class: "row" }, newName, el("button", { class: "primary", type: "submit" }, "Create")))),
    uploadCard(state, () => refresh(state.name)),
    searchCard(state),
    askCard(state),
  );
  refresh();
}

const count = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function uploadCard(state, done) {
  const errors = errorBox();
  const bar = el("progress", { id: "upload-progress", max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const status = el("p", { class: "muted", id: "upload-status", "aria-live": "polite" });
  const input = el("input", { type: "file", id: "files", multiple: true, hidden: true });
  const chooser = el("button", { class: "secondary", type: "button", onclick: () => input.click() }, "Choose files");
  const zone = el("div", { class: "drop", id: "drop" },
    "Drop PDF, HTML, Markdown or text files here, or ", chooser);

  async function send(files) {
    if (!state.name) return showError(errors, new Error("create or pick a collection first"));
    if (!files.length) return;
    const form = new FormData();
    for (const file of files) form.append("files", file);
    showError(errors, null);
    bar.hidden = false; bar.max = 1; bar.value = 0;
    status.textContent = `Sending ${files.length} file(s)…`;
    try {
      const name = state.name;
      const sent = await upload(`/collections/${encodeURIComponent(name)}/documents?wait=false`, form,
        (loaded, total) => { bar.max = total * 2; bar.value = loaded; });
      await follow(name, sent.job);
      done();
    } catch (error) {
      showError(errors, error);
      status.textContent = "";
    }
  }

  // The ingestion job's progress (chunks embedded and stored) fills the bar's second half.
  async function follow(name, job) {
    for (;;) {
      const described = await api(`/collections/${encodeURIComponent(name)}`);
      const now = described.job && described.job.id === job.id ? described.job : job;
      const total = now.chunks_total || 0;
      if (total) { bar.max = 2 * total; bar.value = total + (now.chunks_done || 0); }
      if (now.state === "done") {
        const r = now.result || {};
        bar.value = bar.max;
        status.textContent = `Stored: ${r.added ?? 0} added, ${r.replaced ?? 0} replaced, ${r.unchanged ?? 0} unchanged.`;
        return;
      }
      if (now.state === "failed") throw new Error(`ingestion failed: ${now.error}`);
      status.textContent = total ? `Embedding chunks: ${now.chunks_done || 0} of ${total}` : "Queued…";
      await new Promise((r) => setTimeout(r, 400));
    }
  }

  input.addEventListener("change", () => send([...input.files]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); send([...e.dataTransfer.files]); });
  return card("Upload documents", errors, zone, input, bar, status);
}

// The hit's text with each query word (3+ letters) marked.
function marked(text, query) {
  const words = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])];
  if (!words.length) return [text];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(${escaped.join("|")})`, "giu");
  return text.split(pattern).map((part, i) => (i % 2 ? el("mark", {}, part) : part));
}

function where(hit) {
  const page = hit.page ? `, page ${hit.page}` : "";
  return `${hit.document_id}${page}${hit.source && hit.source !== hit.document_id ? ` (${hit.source})` : ""}`;
}

function searchCard(state) {
  const errors = errorBox();
  const query = el("input", { type: "text", id: "search-query", placeholder: "What are you looking for?" });
  const results = el("div", { id: "search-results", "aria-live": "polite" });
  async function search(event) {
    event.preventDefault();
    if (!state.name) return showError(errors, new Error("create or pick a collection first"));
    try {
      const asked = query.value;
      const found = await api(`/collections/${encodeURIComponent(state.name)}/search`,
        { method: "POST", json: { query: asked, k: 5 } });
      showError(errors, null);
      results.replaceChildren(...(found.results.length ? found.results.map((hit) =>
        el("div", { class: "hit" }, el("div", {}, marked(hit.text, asked)),
          el("div", { class: "source" }, `${where(hit)} · score ${hit.score.toFixed(3)}`)))
        : [el("p", { class: "muted" }, "Nothing found.")]));
    } catch (error) { showError(errors, error); }
  }
  return card("Search", errors,
    el("form", { onsubmit: search }, el("label", { for: "search-query" }, "Query"), query,
      el("button", { class: "primary", type: "submit" }, "Search")), results);
}

function askCard(state) {
  const errors = errorBox();
  const question = el("input", { type: "text", id: "question", placeholder: "Ask a question about the documents" });
  const answer = el("div", { id: "answer", class: "answer", "aria-live": "polite" });
  const button = el("button", { class: "primary", type: "submit" }, "Ask");
  async function ask(event) {
    event.preventDefault();
    if (!state.name) return showError(errors, new Error("create or pick a collection first"));
    button.disabled = true;
    answer.replaceChildren(el("p", { class: "muted" }, "Thinking…"));
    try {
      const { output } = await api("/ask/invoke",
        { method: "POST", json: { input: { question: question.value, collection: state.name } } });
      showError(errors, null);
      answer.replaceChildren(...rendered(output));
    } catch (error) {
      answer.replaceChildren();
      showError(errors, error);
    } finally { button.disabled = false; }
  }
  return el("div", { class: "card wide" }, el("h2", {}, "Ask"), errors,
    el("form", { onsubmit: ask }, el("label", { for: "question" }, "Question"), question, button), answer);
}

// The answer with each [n] a link to its source below it.
function rendered(output) {
  if (!output.found) return [el("p", {}, output.answer || "No passage was close enough to answer from.")];
  const parts = output.answer.split(/(\[\d+\])/g).map((part) => {
    const n = part.match(/^\[(\d+)\]$/);
    if (!n) return part;
    return el("a", { href: `#source-${n[1]}`, class: "cite", onclick: (e) => {
      e.preventDefault();
      const target = document.getElementById(`source-${n[1]}`);
      if (!target) return;
      target.scrollIntoView({ block: "nearest" });
      target.classList.add("flash");
      target.focus();
      setTimeout(() => target.classList.remove("flash"), 1500);
    } }, part);
  });
  const cited = new Set(output.citations.map((c) => c.n));
  const sources = output.sources.filter((s) => cited.has(s.n));
  return [
    el("p", {}, parts),
    el("h3", { class: "muted" }, "Sources"),
    el("ol", {}, sources.map((s) => el("li", { id: `source-${s.n}`, value: s.n, class: "citation", tabindex: -1 },
      el("div", { class: "source" }, where(s)), el("div", {}, s.text)))),
  ];
}
