// Agent: a chat over the Agent Protocol (a thread kept on the server, runs streamed as "updates") that
// shows each tool call and its result as it happens, and asks before the tools ticked "ask first" act.
import { api, apiError, card, el, errorBox, showError } from "./util.js";

// The SSE events of a streamed run: yields {event, data}.
async function* events(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw apiError(response.status, await response.text());
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

export function agentPanel(root) {
  const errors = errorBox();
  const chat = el("div", { class: "chat", id: "agent-chat", "aria-live": "polite" });
  const input = el("textarea", { id: "agent-input", placeholder: "Ask the agent (Ctrl+Enter sends)" });
  const send = el("button", { class: "primary", type: "submit" }, "Send");
  const tools = el("fieldset", { id: "agent-tools" }, el("legend", {}, "Ask me before these tools run"));
  const choice = el("select", { id: "tool-choice" },
    el("option", { value: "auto" }, "when the model chooses to"),
    el("option", { value: "required" }, "at least once before answering"));
  const shown = new Map(); // message id -> its bubbles (a resumed run may send an edited call again)
  let thread = null;

  api("/agent/tools").then(({ tools: listed }) => {
    tools.append(...listed.map((t) => el("label", { class: "switch" },
      el("input", { type: "checkbox", value: t.name, name: "approve" }), t.name)));
  }).catch((error) => showError(errors, error));

  function bubbles(message) {
    const kind = message.type;
    if (kind === "human") return [el("div", { class: "msg human" }, text(message.content))];
    if (kind === "tool") {
      return [el("div", { class: "msg tool" }, `${message.name || "tool"} → ${text(message.content)}`)];
    }
    if (kind !== "ai") return [];
    const calls = (message.tool_calls || []).map((call) =>
      el("div", { class: "msg tool-call" }, `calls ${call.name}(${JSON.stringify(call.args)})`));
    const said = text(message.content).trim();
    return [...(said ? [el("div", { class: "msg ai" }, said)] : []), ...calls];
  }

  function render(message) {
    const made = bubbles(message);
    const key = message.id;
    if (key && shown.has(key)) {
      const old = shown.get(key);
      if (made.length && old.length) old[0].before(...made);
      else if (made.length) chat.append(...made);
      old.forEach((b) => b.remove());
    } else chat.append(...made);
    if (key) shown.set(key, made);
    chat.scrollTop = chat.scrollHeight;
  }

  async function run(body) {
    send.disabled = true;
    showError(errors, null);
    try {
      if (!thread) thread = (await api("/threads", { method: "POST", json: {} })).thread_id;
      const path = `/threads/${thread}/runs/stream`;
      for await (const { event, data } of events(path, { assistant_id: "agent", stream_mode: ["updates"], ...body })) {
        if (event === "error") throw new Error(`the agent failed: ${data.message || data.error}`);
        if (event !== "updates") continue;
        for (const [node, update] of Object.entries(data)) {
          if (node === "__interrupt__") update.forEach(ask);
          else for (const message of (update && update.messages) || []) render(message);
        }
      }
    } catch (error) {
      showError(errors, error);
    } finally { send.disabled = false; }
  }

  // The pending calls of an interrupt: approve, edit the arguments, or reject with a reason.
  function ask(interrupt) {
    const requests = interrupt.value.action_requests || [];
    const box = el("div", { class: "approval", role: "group", "aria-label": "Approval needed" });
    const forms = requests.map((request) => {
      const args = el("textarea", { "aria-label": `Arguments of ${request.name}` }, JSON.stringify(request.args, null, 2));
      const reason = el("input", { type: "text", placeholder: "Why not (sent to the agent)", "aria-label": "Reason" });
      return { request, args, reason, node: el("div", {}, el("p", {}, `The agent wants to run ${request.name}:`),
        args, reason) };
    });
    const decide = (kind) => async () => {
      let decisions;
      try {
        decisions = forms.map(({ request, args, reason }) => {
          if (kind === "approve") return { type: "approve" };
          if (kind === "reject") return { type: "reject", message: reason.value || "The user rejected this call." };
          return { type: "edit", edited_action: { name: request.name, args: JSON.parse(args.value) } };
        });
      } catch (error) {
        return showError(errors, new Error(`the arguments are not valid JSON: ${error.message}`));
      }
      box.remove();
      await run({ command: { resume: { decisions } } });
    };
    box.append(...forms.map((f) => f.node),
      el("button", { class: "primary", type: "button", onclick: decide("approve") }, "Approve"),
      el("button", { class: "secondary", type: "button", onclick: decide("edit") }, "Run with these arguments"),
      el("button", { class: "secondary", type: "button", onclick: decide("reject") }, "Reject"));
    chat.append(box);
    box.querySelector("button").focus();
  }

  async function submit(event) {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    chat.append(el("div", { class: "msg human" }, content)); // the run's updates carry only what nodes add
    const approve = [...tools.querySelectorAll("input:checked")].map((box) => box.value);
    await run({
      input: { messages: [{ role: "user", content }] },
      config: { configurable: { require_approval: approve, tool_choice: choice.value } },
    });
  }

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send.click(); }
  });
  const reset = el("button", { class: "secondary", type: "button", onclick: () => {
    thread = null; shown.clear(); chat.replaceChildren();
  } }, "New conversation");

  root.append(el("div", { class: "card wide" }, el("h2", {}, "Agent"), errors, chat,
    el("form", { onsubmit: submit }, el("label", { for: "agent-input" }, "Message"), input, send, reset)),
  card("Tools", el("label", { for: "tool-choice" }, "The agent calls a tool"), choice, tools, el("p", { class: "muted" },
    "A ticked tool's call waits for you: approve it, run it with arguments you edit, or reject it with a reason.")));
}

function text(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p === "string" ? p : p.text || "")).join("");
  return JSON.stringify(content);
}
