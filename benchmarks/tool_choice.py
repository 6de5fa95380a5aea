"""tool_choice "auto" on the embedded model: does it call a tool when a prompt needs one, and the right one?

Over tests/fixtures/tool_choice.json (98 prompts, 7 tool sets; prompts that need a given tool and prompts that
need none: greetings, writing, facts the model knows), each lever is tuned on the development sets and
measured on the held-out sets, whose tools it never saw. Levers, in the same run:
- model: the 135M model's own choice under the auto grammar (greedy, up to 48 new tokens);
- model probability: the mean log-probability of `<tool_call>\\n{"name": "<tool>"` after the prompt, the
  best tool's score against a threshold tuned on dev;
- router: the encoder's cosine between the prompt and each tool's name and description
  (chains/tools/router.py), the closest tool above a threshold tuned on dev;
- router + probability: a logistic regression on both (top cosine, cosine margin, best log-probability).

    .venv/bin/python benchmarks/tool_choice.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from langchain_core.messages import HumanMessage
from sklearn.linear_model import LogisticRegression

from chains import build_backend, load_settings
from chains.backends.encoder import shared_encoder
from chains.backends.engine import GenerationParams
from chains.classify.methods import label_logprobs
from chains.messages import to_chat_dicts
from chains.tools.calls import parse_calls, with_tools
from chains.tools.grammar import tools_grammar
from chains.tools.router import THRESHOLD, ToolRouter

DATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tool_choice.json"


def load() -> tuple[dict, list[dict]]:
    data = json.loads(DATA.read_text())
    for prompt in data["prompts"]:
        prompt["split"] = "dev" if prompt["set"] in data["split"]["dev"] else "held_out"
    return data["tool_sets"], data["prompts"]


def prompt_ids(engine, text: str, tools: list[dict]) -> list[int]:
    return engine.tokens.chat_ids(to_chat_dicts(with_tools([HumanMessage(text)], tools)))


def model_choices(engine, sets, prompts) -> list[str | None]:
    """The model's own decision under the auto grammar: the tool it calls, or None."""
    jobs = [
        engine.engine.submit(
            prompt_ids(engine, p["text"], sets[p["set"]]),
            GenerationParams(max_new_tokens=48, grammar=tools_grammar(sets[p["set"]], forced=False)),
        )
        for p in prompts
    ]
    choices = []
    for job in jobs:
        *_, reply = job.events()
        _, calls = parse_calls(reply.text)
        choices.append(calls[0]["name"] if calls else None)
    return choices


def call_logprobs(engine, sets, prompts) -> list[list[float]]:
    """Per prompt, the mean log-probability of starting a call to each of its tools."""
    scores = []
    for p in prompts:
        tools = sets[p["set"]]
        labels = [engine.tokens.text_ids(f'<tool_call>\n{{"name": "{t["function"]["name"]}"') for t in tools]
        scores.append(engine.run(label_logprobs, prompt_ids(engine, p["text"], tools), labels))
    return scores


def tuned(values: np.ndarray, needed: np.ndarray) -> float:
    """The threshold that decides call / no call best on these values: the middle of the best ones."""
    ordered = np.unique(values)
    cuts = (ordered[:-1] + ordered[1:]) / 2
    accuracy = np.array([np.mean((values > cut) == needed) for cut in cuts])
    best = cuts[accuracy == accuracy.max()]
    return float(np.median(best))


def report(name: str, prompts, choices) -> list[str]:
    rows = []
    for split in ("dev", "held_out"):
        picked = [(p, c) for p, c in zip(prompts, choices, strict=True) if p["split"] == split]
        decided = np.mean([(p["tool"] is not None) == (c is not None) for p, c in picked])
        made = [(p, c) for p, c in picked if c is not None]
        right = np.mean([p["tool"] == c for p, c in made]) if made else float("nan")
        needed = [c for p, c in picked if p["tool"] is not None]
        recall = np.mean([c is not None for c in needed])
        spared = np.mean([c is None for p, c in picked if p["tool"] is None])
        rows.append(
            f"| {name} | {split} | {len(picked)} | {decided:.1%} | {len(made)} | {right:.1%} | "
            f"{recall:.1%} | {spared:.1%} |"
        )
    return rows


def main() -> None:
    sets, prompts = load()
    backend = build_backend(load_settings(backend="local", model=None))
    backend.engine.load()
    engine = backend.engine
    dev = np.array([p["split"] == "dev" for p in prompts])
    needed = np.array([p["tool"] is not None for p in prompts])
    names = [[t["function"]["name"] for t in sets[p["set"]]] for p in prompts]

    started = time.perf_counter()
    own = model_choices(engine, sets, prompts)
    own_seconds = time.perf_counter() - started

    started = time.perf_counter()
    logprobs = call_logprobs(engine, sets, prompts)
    prob_seconds = time.perf_counter() - started
    best_lp = np.array([max(s) for s in logprobs])
    lp_threshold = tuned(best_lp[dev], needed[dev])
    by_prob = [n[int(np.argmax(s))] if b > lp_threshold else None
               for n, s, b in zip(names, logprobs, best_lp, strict=True)]  # fmt: skip

    router = ToolRouter(shared_encoder())
    router.scores("warm up", sets["math"])
    started = time.perf_counter()
    cosines = [router.scores(p["text"], sets[p["set"]]) for p in prompts]
    router_seconds = time.perf_counter() - started
    top = np.array([max(c) for c in cosines])
    margin = np.array([max(c) - sorted(c)[-2] for c in cosines])
    cos_threshold = tuned(top[dev], needed[dev])
    by_router = [n[int(np.argmax(c))] if t > cos_threshold else None
                 for n, c, t in zip(names, cosines, top, strict=True)]  # fmt: skip
    shipped = [n[int(np.argmax(c))] if t > THRESHOLD else None
               for n, c, t in zip(names, cosines, top, strict=True)]  # fmt: skip

    features = np.stack([top, margin, best_lp], 1)
    combined = LogisticRegression().fit(features[dev], needed[dev])
    calls = combined.predict(features)
    by_both = [n[int(np.argmax(c))] if call else None
               for n, c, call in zip(names, cosines, calls, strict=True)]  # fmt: skip

    print(f"{len(prompts)} prompts ({int(needed.sum())} need a tool), {len(sets)} tool sets; "
          f"dev sets tune, held-out sets measure\n")  # fmt: skip
    print("| lever | split | prompts | right call/no-call | calls made | right tool (of calls made) | "
          "calls when needed | no call when not |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, choices in [
        ("model alone (auto grammar)", own),
        (f"model probability (threshold {lp_threshold:.2f})", by_prob),
        (f"router (threshold tuned on dev: {cos_threshold:.2f})", by_router),
        (f"router as shipped (threshold {THRESHOLD})", shipped),
        ("router + probability (logistic regression)", by_both),
    ]:
        print("\n".join(report(name, prompts, choices)))
    n = len(prompts)
    print(
        f"\ncost per prompt: model alone {own_seconds / n * 1000:.0f} ms (generation, batched), "
        f"model probability {prob_seconds / n * 1000:.0f} ms (one prefill + one pass per tool), "
        f"router {router_seconds / n * 1000:.1f} ms (one encoder pass, tool texts cached)"
    )


if __name__ == "__main__":
    main()
