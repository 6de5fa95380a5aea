"""The /agent loop with the embedded model (in-process, greedy): does every run end in an answer, with
only valid calls, and what does the agent machinery cost beside the model and the tools?

Prints one row per tool_choice (required; auto decided by the tool router, the default for the embedded
model; auto left to the model, HFCHAIN_TOOL_ROUTER=off): runs, runs that ended in an answer, calls made,
calls valid against their tool's schema, tool errors, mean steps, and where the time went (model calls, tool
calls, the rest: graph, middleware, budget trimming), all from the same runs. Then the first step's
decision: calls when the question needs a tool, no call when it needs none, the right tool.

    .venv/bin/python benchmarks/agent.py [--questions 12]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections import defaultdict

import jsonschema
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, ToolMessage

from chains import build_backend, build_classify_chain, build_classify_methods, load_settings
from chains.agent.runner import build_agent
from chains.sessions import SessionStore
from chains.summarize import build_summarize_chain

TOOLED = [  # (question, the tool its first step should call)
    ("What is 17 * 23?", "calculator"),
    ("What time is it in Tokyo?", "current_time"),
    ("How many tokens are in the sentence 'the cat sat on the mat'?", "count_tokens"),
    ("Is the review 'I loved every minute' positive or negative?", "classify"),
    ("What is the square root of 1764?", "calculator"),
    ("What is the date today in Paris?", "current_time"),
    ("Summarize: The meeting moved to Tuesday because the room was booked on Monday.", "summarize"),
    ("What is (12 + 30) / 7?", "calculator"),
    ("Count the tokens of 'hello world'.", "count_tokens"),
    ("Classify 'the package arrived broken' as complaint or praise.", "classify"),
    ("What is 2 to the power of 10?", "calculator"),
    ("What time is it in New York?", "current_time"),
]
UNTOOLED = ["Hello there", "Write a haiku about the moon.", "What is the capital of Spain?", "Thanks a lot!"]
QUESTIONS = [q for q, _ in TOOLED] + UNTOOLED
EXPECTED = dict(TOOLED)


class Clock(AsyncCallbackHandler):
    """Seconds spent inside model calls and inside tool calls (top-level ones of the agent)."""

    def __init__(self) -> None:
        self.started: dict = {}
        self.spent: dict[str, float] = defaultdict(float)

    async def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
        self.started[run_id] = ("model", time.perf_counter())

    async def on_llm_end(self, response, *, run_id, **kw):
        self._stop(run_id)

    async def on_tool_start(self, serialized, input_str, *, run_id, **kw):
        self.started[run_id] = ("tool", time.perf_counter())

    async def on_tool_end(self, output, *, run_id, **kw):
        self._stop(run_id)

    async def on_tool_error(self, error, *, run_id, **kw):
        self._stop(run_id)

    def _stop(self, run_id) -> None:
        kind, began = self.started.pop(run_id, (None, 0.0))
        if kind and not any(
            k == "tool" for k, _ in self.started.values()
        ):  # a chain inside a tool: tool time
            self.spent[kind] += time.perf_counter() - began


async def measure(agent, sessions, questions, choice: str, tokens: int) -> dict:
    clock, totals = Clock(), defaultdict(float)
    schemas = {t.name: t.tool_call_schema.model_json_schema() for t in agent.toolbox.tools}
    for question in questions:
        session = f"bench-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"tool_choice": choice, "max_new_tokens": tokens}, "callbacks": [clock]}
        started = time.perf_counter()
        await agent.ainvoke(
            {"messages": [{"role": "user", "content": question}], "session_id": session}, config
        )
        totals["seconds"] += time.perf_counter() - started
        steps = sessions.history(session)[1:]
        calls = [c for m in steps if isinstance(m, AIMessage) for c in m.tool_calls]
        first = (
            steps[0].tool_calls[0]["name"]
            if isinstance(steps[0], AIMessage) and steps[0].tool_calls
            else None
        )
        needed = EXPECTED.get(question)
        totals["needed"] += needed is not None
        totals["called_needed"] += needed is not None and first is not None
        totals["spared"] += needed is None and first is None
        totals["first_calls"] += first is not None
        totals["right_tool"] += first is not None and first == needed
        totals["runs"] += 1
        totals["answered"] += isinstance(steps[-1], AIMessage) and not steps[-1].tool_calls
        totals["steps"] += sum(isinstance(m, AIMessage) for m in steps)
        totals["calls"] += len(calls)
        totals["valid"] += sum(_valid(call, schemas) for call in calls)
        totals["errors"] += sum(isinstance(m, ToolMessage) and m.status == "error" for m in steps)
    return {**totals, "model": clock.spent["model"], "tool": clock.spent["tool"]}


def _valid(call: dict, schemas: dict) -> bool:
    try:
        jsonschema.validate(call["args"], schemas[call["name"]])
    except (jsonschema.ValidationError, KeyError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    settings = load_settings(backend="local", model=None, agent_max_steps=3)
    backend = build_backend(settings)
    backend.engine.load()
    sessions = SessionStore(f"sqlite:///{tempfile.mkdtemp(prefix='hfchain-bench-')}/agent.db")
    classify = build_classify_chain(build_classify_methods(backend))
    agent = build_agent(backend, settings, build_summarize_chain(backend), classify, sessions)
    questions = (QUESTIONS * 10)[: args.questions]
    print(
        f"{len(questions)} questions ({sum(q in EXPECTED for q in questions)} need a tool), "
        f"5 built-in tools, max_steps 3, greedy, max_new_tokens {args.max_new_tokens}\n"
    )
    router, decisions = backend.chat_model.router, []
    print("| tool_choice | runs | answered | calls | valid calls | tool errors | mean steps | s/run | "
          "model | tools | agent machinery |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, choice, routed in (("required", "required", True), ("auto (router)", "auto", True),
                                  ("auto (model alone)", "auto", False)):  # fmt: skip
        backend.chat_model.router = router if routed else None
        t = asyncio.run(measure(agent, sessions, questions, choice, args.max_new_tokens))
        decisions.append((label, t))
        rest = t["seconds"] - t["model"] - t["tool"]
        share = lambda part, t=t: f"{part / t['seconds']:.1%}"  # noqa: E731
        row = [label, int(t["runs"]), int(t["answered"]), int(t["calls"]), int(t["valid"]), int(t["errors"]),
               f"{t['steps'] / t['runs']:.2f}", f"{t['seconds'] / t['runs']:.1f}", share(t["model"]),
               share(t["tool"]), share(rest)]  # fmt: skip
        print("| " + " | ".join(map(str, row)) + " |")
    backend.chat_model.router = router
    print(
        "\n| first step | calls when a tool is needed | no call when none is | right tool (of those calls) |"
    )
    print("|---|---|---|---|")
    for label, t in decisions:
        untooled = t["runs"] - t["needed"]
        right = f"{t['right_tool'] / t['called_needed']:.0%}" if t["called_needed"] else "-"
        called, spared = (
            f"{int(t['called_needed'])}/{int(t['needed'])}",
            f"{int(t['spared'])}/{int(untooled)}",
        )
        print(f"| {label} | {called} | {spared} | {right} |")


if __name__ == "__main__":
    main()
