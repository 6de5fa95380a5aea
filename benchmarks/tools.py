"""Tool calls, constrained vs unconstrained, with the embedded model (in-process, greedy).

Prints: the rate of replies whose call parses and validates against its tool's schema, the rate of
the right tool and of the right arguments (tokens/s in that table also reflect reply lengths: constrained
rows stop after their call), the grammar machinery's own cost (the same free-text requests with and without
a grammar that allows everything, so that the replies and their lengths are identical: a pure ratio), at
batch 1 and 8 in the same run, and grammar compile time cold and cached. Then constrained replies under a
tight limit (structured facts about cities; a named tool forced on messages that need none, the issue-21
cases), with the guards off, the budget guard alone, and both guards: whole replies, valid ones, replies cut
by the limit, tokens the guards chose, strings the repetition guard ended, and tokens/s.

    .venv/bin/python benchmarks/tools.py [--prompts 60] [--guards-only]
    HFCHAIN_RUNTIME=onnx HFCHAIN_ONNX_PRECISION=int4 .venv/bin/python benchmarks/tools.py  # int4
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import jsonschema
from langchain_core.messages import HumanMessage

from chains import build_backend, load_settings
from chains.backends.engine import GenerationParams
from chains.messages import to_chat_dicts
from chains.tools.calls import openai_tools, parse_calls
from chains.tools.constraint import Constraint
from chains.tools.grammar import GrammarBook, json_grammar, regex_grammar, tools_grammar
from chains.tools.plan import CallPlan


def tool(name: str, description: str, properties: dict) -> dict:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS = openai_tools(
    [
        tool(
            "get_weather",
            "Weather forecast for a city",
            {"city": {"type": "string"}, "days": {"type": "integer"}},
        ),
        tool("convert_currency", "Convert money", {"amount": {"type": "number"}, "to": {"type": "string"}}),
        tool("get_time", "Current time in a timezone", {"timezone": {"type": "string"}}),
        tool("add", "Add two integers", {"a": {"type": "integer"}, "b": {"type": "integer"}}),
        tool("send_email", "Send an email", {"to": {"type": "string"}, "subject": {"type": "string"}}),
    ]
)
CITIES = [
    "Paris",
    "Tokyo",
    "Lima",
    "Oslo",
    "Cairo",
    "Delhi",
    "Rome",
    "Quito",
    "Seoul",
    "Dakar",
    "Bern",
    "Lagos",
]


def prompts(count: int) -> list[tuple[str, str, dict]]:
    """(question, expected tool, expected arguments), cycling over the five tools."""
    makers = [
        lambda i: (
            f"What will the weather be in {CITIES[i % 12]} for the next {i % 5 + 1} days?",
            "get_weather",
            {"city": CITIES[i % 12], "days": i % 5 + 1},
        ),
        lambda i: (
            f"Convert {10 * (i + 1)} dollars to EUR.",
            "convert_currency",
            {"amount": 10 * (i + 1), "to": "EUR"},
        ),
        lambda i: (
            f"What time is it in the timezone Europe/{CITIES[i % 12]}?",
            "get_time",
            {"timezone": f"Europe/{CITIES[i % 12]}"},
        ),
        lambda i: (f"Add {i + 2} and {i * 3 + 1}.", "add", {"a": i + 2, "b": i * 3 + 1}),
        lambda i: (
            f"Send an email to bob@example.com with the subject 'Meeting {i}'.",
            "send_email",
            {"to": "bob@example.com", "subject": f"Meeting {i}"},
        ),
    ]
    return [makers[i % 5](i // 5) for i in range(count)]


def run(engine, items, grammar: str | None, tokens: int, batch: int) -> tuple[list, float, int]:
    """Replies for all items, `batch` at a time; (completions, seconds, completion tokens)."""
    plan = CallPlan(tools=TOOLS)
    ids = [engine.tokens.chat_ids(to_chat_dicts(plan.messages([HumanMessage(q)]))) for q, _, _ in items]
    params = GenerationParams(max_new_tokens=tokens, grammar=grammar)
    replies, started = [], time.perf_counter()
    for start in range(0, len(ids), batch):
        replies += engine.generate(ids[start : start + batch], params)
    seconds = time.perf_counter() - started
    return replies, seconds, sum(r.completion_tokens for r in replies)


def score(replies, items) -> tuple[float, float, float]:
    """(valid call rate, right tool rate, right arguments rate)."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    valid = right_tool = right_args = 0
    for reply, (_, name, args) in zip(replies, items, strict=True):
        _, calls = parse_calls(reply.text)
        if not calls or calls[0]["name"] not in schemas:
            continue
        try:
            jsonschema.validate(calls[0]["args"], schemas[calls[0]["name"]])
        except jsonschema.ValidationError:
            continue
        valid += 1
        right_tool += calls[0]["name"] == name
        right_args += calls[0]["name"] == name and calls[0]["args"] == args
    n = len(items)
    return valid / n, right_tool / n, right_args / n


FACTS = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "country": {"type": "string"},
        "population_millions": {"type": "number", "minimum": 0},
    },
    "required": ["name", "country", "population_millions"],
    "additionalProperties": False,
}
CALCULATOR = tool("calculator", "Evaluate an arithmetic expression", {"expression": {"type": "string"}})
UNRELATED = ["Hello there", "Good morning!", "Thanks a lot.", "How are you?", "Tell me a story.",
             "Nice weather today.", "What's your name?", "Write a haiku."]  # fmt: skip
GUARDS = [("off", False, False), ("budget", True, False), ("budget + repetition", True, True)]


def guard_cases(engine) -> list[tuple[list[int], str, str]]:
    """(prompt ids, grammar, kind): facts about 8 cities as JSON, and a calculator call forced on 8
    messages that need none."""
    hint = "Reply with one JSON object and nothing else. It must match this JSON schema:\n" + json.dumps(
        FACTS
    )

    def facts(city: str) -> list[int]:
        return engine.tokens.chat_ids(
            [{"role": "system", "content": hint}, {"role": "user", "content": f"Describe {city}."}]
        )

    cases = [(facts(city), json_grammar(FACTS), "json") for city in CITIES[:8]]
    plan = CallPlan(tools=[CALCULATOR])
    cases += [
        (engine.tokens.chat_ids(to_chat_dicts(plan.messages([HumanMessage(q)]))),
         tools_grammar([CALCULATOR], forced=True), "call")
        for q in UNRELATED
    ]  # fmt: skip
    return cases


def whole(reply, kind: str) -> tuple[bool, bool]:
    """(the reply is a whole structure, it is valid for its schema)."""
    if kind == "call":
        _, calls = parse_calls(reply.text)
        return bool(calls), bool(calls) and isinstance(calls[0]["args"].get("expression"), str)
    try:
        data = json.loads(reply.text)
    except ValueError:
        return False, False
    try:
        jsonschema.validate(data, FACTS)
    except jsonschema.ValidationError:
        return True, False
    return True, True


def guards_table(engine, tokens: int) -> None:
    """Constrained replies under a tight limit, guards off / budget / both, at batch 1 and 8."""
    cases, core = guard_cases(engine), engine.engine
    print(f"\nconstrained replies at max_new_tokens {tokens}: {len(cases) // 2} JSON facts about a city, "
          f"{len(cases) // 2} calculator calls forced on messages that need none\n")  # fmt: skip
    print("| guards | batch | whole | valid | cut by the limit | tokens chosen by a guard | strings ended | "
          "mean tokens | tokens/s | guards' share of the run |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    spent, fit = [0.0], Constraint.fit

    def timed(self, *args):  # the guards' work is all in fit(): how long it takes, in the same run
        began = time.perf_counter()
        try:
            return fit(self, *args)
        finally:
            spent[0] += time.perf_counter() - began

    Constraint.fit = timed
    for (label, budget, repetition), batch in itertools.product(GUARDS, (1, 8)):
        core.budget_guard, core.repetition_guard = budget, repetition
        replies, constraints, started, spent[0] = [], [], time.perf_counter(), 0.0
        for start in range(0, len(cases), batch):
            jobs = [core.submit(ids, GenerationParams(max_new_tokens=tokens, grammar=g))
                    for ids, g, _ in cases[start : start + batch]]  # fmt: skip
            for job in jobs:
                *_, reply = job.events()
                replies.append(reply)
                constraints.append(job.constraint)
        seconds = time.perf_counter() - started
        checks = [whole(r, kind) for r, (_, _, kind) in zip(replies, cases, strict=True)]
        n, generated = len(cases), sum(r.completion_tokens for r in replies)
        row = [label, batch, f"{sum(w for w, _ in checks)}/{n}", f"{sum(v for _, v in checks)}/{n}",
               sum(r.finish_reason == "length" for r in replies), sum(c.forced for c in constraints),
               sum(c.repeats for c in constraints), f"{generated / n:.1f}",
               f"{generated / seconds:.1f}", f"{spent[0] / seconds:.1%}"]  # fmt: skip
        print("| " + " | ".join(map(str, row)) + " |")
    core.budget_guard, core.repetition_guard, Constraint.fit = True, True, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--guard-tokens", type=int, default=40)
    parser.add_argument("--guards-only", action="store_true")
    args = parser.parse_args()
    backend = build_backend(load_settings(backend="local", model=None))
    backend.engine.load()
    engine = backend.engine
    print(f"runtime: {backend.runtime}")
    if args.guards_only:
        guards_table(engine, args.guard_tokens)
        return
    items = prompts(args.prompts)
    grammar = tools_grammar(TOOLS, forced=True)

    book = GrammarBook(engine.tokenizer, engine.model.config.vocab_size)
    started = time.perf_counter()
    book._tokenizer_info()
    prep = time.perf_counter() - started
    started = time.perf_counter()
    book.matcher(grammar)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        book.matcher(grammar)
    cached = (time.perf_counter() - started) / 20

    print(f"{len(items)} prompts over {len(TOOLS)} tools, greedy, max_new_tokens {args.max_new_tokens}\n")
    print(
        f"grammar: tokenizer preparation {prep * 1000:.0f} ms once; compile {cold * 1000:.1f} ms cold, "
        f"{cached * 1000:.2f} ms cached\n"
    )
    print("| decoding | batch | valid calls | right tool | right arguments | tokens/s |")
    print("|---|---|---|---|---|---|")
    engine.generate(
        [engine.tokens.chat_ids([{"role": "user", "content": "Hi"}])], GenerationParams(max_new_tokens=4)
    )
    speeds = {}
    for batch, (label, g) in itertools.product((1, 8), (("unconstrained", None), ("constrained", grammar))):
        subset = items if batch == 8 else items[:16]  # batch 1 on fewer prompts: it is 4x slower
        replies, seconds, tokens = run(engine, subset, g, args.max_new_tokens, batch)
        valid, tool_rate, args_rate = score(replies, subset)
        speeds[(label, batch)] = speed = tokens / seconds
        row = [label, batch, f"{valid:.0%}", f"{tool_rate:.0%}", f"{args_rate:.0%}", f"{speed:.1f}"]
        print("| " + " | ".join(map(str, row)) + " |")
    print("\n| grammar machinery | batch | same replies | tokens/s without | tokens/s with | ratio |")
    print("|---|---|---|---|---|---|")
    stories = [f"Write a short story about {city}." for city in CITIES[:8]]
    for batch in (1, 8):
        ids = [engine.tokens.chat_ids([{"role": "user", "content": q}]) for q in stories]
        timed = {}
        for label, g in (("without", None), ("with", regex_grammar(r"(.|\n)*"))):
            params = GenerationParams(max_new_tokens=args.max_new_tokens, grammar=g)
            started, replies = time.perf_counter(), []
            for start in range(0, len(ids), batch):
                replies += engine.generate(ids[start : start + batch], params)
            seconds = time.perf_counter() - started
            timed[label] = (replies, sum(r.completion_tokens for r in replies) / seconds)
        same = [r.text for r in timed["without"][0]] == [r.text for r in timed["with"][0]]
        without, with_ = timed["without"][1], timed["with"][1]
        print(f"| permissive | {batch} | {same} | {without:.1f} | {with_:.1f} | {with_ / without:.2f}x |")
    guards_table(engine, args.guard_tokens)


if __name__ == "__main__":
    main()
