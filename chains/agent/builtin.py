"""The agent's built-in tools: a safe calculator, the current time, token counting, summarize, classify."""

from __future__ import annotations

import ast
import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field
from simpleeval import DEFAULT_OPERATORS, InvalidExpression, SimpleEval

from chains.tenants.caller import tenant_of

MAX_EXPONENT = 1000  # keeps 9**9**9 and friends from tying up a worker
MAX_EXPRESSION = 500
FUNCTIONS = {
    name: getattr(math, name)
    for name in (
        "sqrt", "exp", "log", "log10", "log2", "sin", "cos", "tan", "asin", "acos", "atan",
        "floor", "ceil", "factorial", "gcd", "hypot", "degrees", "radians",
    )
} | {"abs": abs, "round": round, "min": min, "max": max}  # fmt: skip
NAMES = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _power(base: Any, exponent: Any) -> Any:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolException(f"exponent {exponent} is too large (at most {MAX_EXPONENT})")
    return DEFAULT_OPERATORS[ast.Pow](base, exponent)


def _factorial(n: Any) -> Any:
    if not isinstance(n, int) or not 0 <= n <= 500:
        raise ToolException("factorial takes a whole number from 0 to 500")
    return math.factorial(n)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / // % **, math functions); never Python's eval."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolException(f"the expression is {len(expression)} characters; at most {MAX_EXPRESSION}")
    operators = {**DEFAULT_OPERATORS, ast.Pow: _power}
    evaluator = SimpleEval(operators=operators, functions={**FUNCTIONS, "factorial": _factorial}, names=NAMES)
    try:
        value = evaluator.eval(expression)
    except (InvalidExpression, SyntaxError, TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise ToolException(f"cannot evaluate {expression!r}: {e.__class__.__name__}: {e}") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ToolException(f"{expression!r} is not a number expression")
    return repr(value)


class CalculatorArgs(BaseModel):
    expression: str = Field(
        description="An arithmetic expression, e.g. (17 * 3) + sqrt(16)",
        pattern=r"^[0-9a-z_+\-*/%(). ,]+$",  # numbers, operators and function names only
        max_length=MAX_EXPRESSION,
    )


class TimeArgs(BaseModel):
    timezone: str = Field("UTC", description="An IANA time zone, e.g. Europe/Paris")


class TextArgs(BaseModel):
    text: str = Field(description="The text")


class ClassifyArgs(BaseModel):
    text: str = Field(description="The text to classify")
    labels: list[str] = Field(description="Two or more candidate labels")


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601."""
    try:
        zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolException(
            f"unknown time zone {timezone!r}: use an IANA name such as Europe/Paris"
        ) from None
    return datetime.now(zone).isoformat(timespec="seconds")


def _tool(func: Callable, name: str, description: str, args: type[BaseModel], coroutine=None) -> BaseTool:
    return StructuredTool.from_function(
        func=func,
        coroutine=coroutine,
        name=name,
        description=description,
        args_schema=args,
        handle_tool_error=False,  # the agent's tool guard turns errors into tool messages
    )


def chain_tools(count: Callable[[str], int], summarize: Runnable, classify: Runnable) -> dict[str, BaseTool]:
    """The tools that call hfchain itself: token counting and the summarize and classify chains."""

    async def summarize_text(text: str) -> str:
        return (await summarize.ainvoke({"text": text}))["summary"]

    def classify_now(text: str, labels: list[str]) -> dict:
        return _label_and_scores(classify.invoke({"text": text, "labels": labels}))

    async def classify_text(text: str, labels: list[str]) -> dict:
        return _label_and_scores(await classify.ainvoke({"text": text, "labels": labels}))

    return {
        "count_tokens": _tool(
            count, "count_tokens", "Count the tokens of a text with the served model's tokenizer.", TextArgs
        ),
        "summarize": _tool(
            lambda text: summarize.invoke({"text": text})["summary"],
            "summarize",
            "Summarize a text of any length.",
            TextArgs,
            coroutine=summarize_text,
        ),
        "classify": _tool(
            classify_now,
            "classify",
            "Pick the label that fits a text best, with a score per label.",
            ClassifyArgs,
            coroutine=classify_text,
        ),
    }


class SearchArgs(BaseModel):
    query: str = Field(description="What to look for in the documents", min_length=1, max_length=2000)
    collection: str | None = Field(None, description="The collection to search (default: every one)")


SEARCH_HITS = 4  # passages the agent reads per search


def knowledge_tools(knowledge: Any) -> dict[str, BaseTool]:
    """search_documents: hybrid search over the caller's collections (chains.knowledge.Knowledge)."""

    def search_documents(query: str, config: RunnableConfig, collection: str | None = None) -> str:
        tenant = tenant_of(config)
        every, note = knowledge.names(tenant), ""
        if not every:
            return "There are no documents to search yet: upload some to a collection first."
        names = [collection] if collection in every else every
        if collection and collection not in every:  # a small model invents names: search them all
            note = f"(There is no collection {collection!r}; searched {', '.join(every)}.)\n\n"
        found = []
        for name in names:
            found += [(name, hit) for hit in knowledge.search(tenant, name, query, SEARCH_HITS)]
        found.sort(key=lambda pair: -pair[1]["score"])
        if not found:
            return f"Nothing in {', '.join(names)} matches {query!r}."
        return note + "\n\n".join(_passage(name, hit) for name, hit in found[:SEARCH_HITS])

    async def asearch_documents(query: str, config: RunnableConfig, collection: str | None = None) -> str:
        return await asyncio.to_thread(search_documents, query, config, collection)

    description = (
        "Search the user's own documents (uploaded files, notes, reports) for passages about a question, "
        "with their sources."
    )
    return {
        "search_documents": _tool(
            search_documents, "search_documents", description, SearchArgs, coroutine=asearch_documents
        )
    }


def _passage(collection: str, hit: dict) -> str:
    page = f", page {hit['page']}" if hit.get("page") else ""
    return f"[{collection}/{hit['document_id']}{page}] {' '.join(hit['text'].split())}"


def _label_and_scores(result: dict) -> dict:
    return {"label": result["label"], "scores": result["scores"]}


def plain_tools() -> dict[str, BaseTool]:
    """The tools that need nothing from the backend."""
    return {
        "calculator": _tool(
            calculate,
            "calculator",
            # the tool router reads descriptions: one that names the operations and shows one routes
            # symbolic questions ("What is 100 - 37?") that "an arithmetic expression" alone does not
            "Evaluate an arithmetic expression exactly: a sum, difference, product, quotient, power or "
            "square root of numbers, e.g. 17 * 23.",
            CalculatorArgs,
        ),
        "current_time": _tool(
            current_time, "current_time", "The current date and time in a time zone.", TimeArgs
        ),
    }
