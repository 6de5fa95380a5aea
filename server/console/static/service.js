// Service: what /ready says (model, runtime) and, from /metrics every few seconds, the replica, queue
// depth, tokens/s and latency over the last minutes as small plots.
import { apiError, card, el, errorBox, showError, sparkline } from "./util.js";

const EVERY_MS = 3000;
const KEEP_MS = 5 * 60 * 1000;

// Prometheus text -> [{name, labels, value}].
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

const total = (samples, name, test = () => true) =>
  samples.filter((s) => s.name === name && test(s.labels)).reduce((sum, s) => sum + s.value, 0);

// The readings of one scrape (counters as totals; rates come from two scrapes).
function reading(samples) {
  return {
    tokensOut: total(samples, "hfchain_tokens_total", (l) => l.direction === "out"),
    requests: total(samples, "hfchain_requests_total"),
    latencySum: total(samples, "hfchain_request_duration_seconds_sum"),
    latencyCount: total(samples, "hfchain_request_duration_seconds_count"),
    ttftSum: total(samples, "hfchain_time_to_first_token_seconds_sum"),
    ttftCount: total(samples, "hfchain_time_to_first_token_seconds_count"),
    queue: total(samples, "hfchain_queue_depth"),
    running: total(samples, "hfchain_batch_running"),
    memory: total(samples, "process_resident_memory_bytes"),
  };
}

const PLOTS = [
  { key: "tokens", title: "Tokens/s generated", unit: "tok/s", digits: 1 },
  { key: "latency", title: "Mean request latency", unit: "s", digits: 2 },
  { key: "ttft", title: "Mean time to first token", unit: "s", digits: 2 },
  { key: "requests", title: "Requests/s", unit: "req/s", digits: 2 },
  { key: "queue", title: "Queue depth", unit: "waiting", digits: 0 },
  { key: "running", title: "Running batch", unit: "rows", digits: 0 },
];

export function servicePanel(root) {
  const errors = errorBox();
  const stats = el("div", { class: "stats", id: "service-stats" });
  const plots = Object.fromEntries(PLOTS.map((p) => [p.key, {
    ...p, points: [], figure: el("div", { class: "plot" }),
    now: el("span", { class: "now" }, `first point after ${EVERY_MS / 1000} s…`),
  }]));
  let previous = null;

  function stat(label, value) {
    return el("div", { class: "stat" }, el("span", { class: "muted" }, label), el("b", {}, value ?? "–"));
  }

  async function scrape() {
    if (root.hidden) return; // nothing is drawn while another tab is open
    const problems = [];
    let ready = {};
    try {
      const response = await fetch("/ready");
      ready = await response.json();
    } catch (error) { problems.push(`/ready: ${error.message}`); }
    let samples = [];
    try {
      const response = await fetch("/metrics");
      const body = await response.text();
      if (!response.ok) throw apiError(response.status, body);
      samples = parseMetrics(body);
    } catch (error) { problems.push(`/metrics: ${error.message}`); }
    showError(errors, problems.length ? new Error(problems.join(" · ")) : null);
    const info = samples.find((s) => s.name === "hfchain_replica_info");
    const now = Date.now(), read = reading(samples);
    stats.replaceChildren(
      stat("Model", ready.model), stat("Status", ready.status), stat("Backend", ready.backend),
      stat("Runtime", ready.runtime), stat("Encoder", ready.encoder_runtime),
      stat("Replica", info ? info.labels.replica : undefined),
      stat("Memory", read.memory ? `${(read.memory / 2 ** 20).toFixed(0)} MiB` : undefined));
    if (samples.length && previous) {
      const seconds = (now - previous.at) / 1000;
      const rate = (a, b) => Math.max(0, a - b) / seconds;
      const mean = (sum, count, ps, pc) => (count - pc > 0 ? (sum - ps) / (count - pc) : null);
      const values = {
        tokens: rate(read.tokensOut, previous.read.tokensOut),
        requests: rate(read.requests, previous.read.requests),
        latency: mean(read.latencySum, read.latencyCount, previous.read.latencySum, previous.read.latencyCount),
        ttft: mean(read.ttftSum, read.ttftCount, previous.read.ttftSum, previous.read.ttftCount),
        queue: read.queue,
        running: read.running,
      };
      for (const plot of Object.values(plots)) {
        const value = values[plot.key];
        plot.points.push([now, value ?? 0]);
        while (plot.points.length && plot.points[0][0] < now - KEEP_MS) plot.points.shift();
        plot.figure.replaceChildren(sparkline(plot.points));
        const peak = Math.max(...plot.points.map((p) => p[1]));
        plot.now.textContent = `${value === null ? "no requests" : `${value.toFixed(plot.digits)} ${plot.unit}`}` +
          ` · peak ${peak.toFixed(plot.digits)} over ${Math.round((now - plot.points[0][0]) / 1000)} s`;
      }
    }
    if (samples.length) previous = { at: now, read };
  }

  root.append(
    el("div", { class: "card wide" }, el("h2", {}, "Service"), errors, stats,
      el("p", { class: "muted" }, `Read from /ready and /metrics every ${EVERY_MS / 1000} s; plots keep the last 5 minutes.`)),
    ...Object.values(plots).map((p) => card(p.title, p.now, p.figure)));
  scrape();
  setInterval(scrape, EVERY_MS);
}
