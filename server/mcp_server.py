"""hfchain as an MCP server: its chains as tools at /mcp (Streamable HTTP, stateless, so any replica
answers; API keys apply as Bearer tokens, as on every route) and over stdio (`hfchain mcp`)."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage
from mcp.server.fastmcp import Context, FastMCP

from server.callers import run_config

INSTRUCTIONS = (
    "hfchain serves a Hugging Face model: generate text, summarize, classify, search and ask the caller's "
    "document collections, and run its tool-calling agent."
)


def build_mcp(state: Any, host: str = "127.0.0.1") -> FastMCP:
    """The MCP server over the app's chains (`state`: the app's state, or any object with `chains`)."""
    mcp = FastMCP("hfchain", instructions=INSTRUCTIONS, stateless_http=True, json_response=True, host=host)
    chains, knowledge = state.chains, getattr(state, "knowledge_chains", None)

    @mcp.tool()
    async def generate(
        prompt: str, max_new_tokens: int = 128, temperature: float = 0.0, ctx: Context = None
    ) -> str:
        """Continue a raw prompt with the served model (no chat template)."""
        knobs = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        return await chains["generate"].ainvoke({"prompt": prompt}, _config(ctx, knobs))

    @mcp.tool()
    async def summarize(text: str, ctx: Context = None) -> str:
        """Summarize a text of any length (split to fit the model, then combined)."""
        result = await chains["summarize"].ainvoke({"text": text}, _config(ctx))
        return result["summary"] if isinstance(result, dict) else str(result)

    @mcp.tool()
    async def classify(text: str, labels: list[str], ctx: Context = None) -> dict[str, Any]:
        """Classify a text into one of the labels: the best label and every label's probability."""
        result = await chains["classify"].ainvoke({"text": text, "labels": labels}, _config(ctx))
        found = result.model_dump() if hasattr(result, "model_dump") else dict(result)
        return {"label": found["label"], "scores": found["scores"]}

    @mcp.tool()
    async def run_agent(question: str, ctx: Context = None) -> str:
        """Ask hfchain's agent, which may call its own tools (calculator, summarize, ...) before answering."""
        reply = await chains["agent"].ainvoke(
            {"messages": [{"role": "user", "content": question}]}, _config(ctx)
        )
        return reply.text if isinstance(reply, AIMessage) else str(reply)

    if knowledge is not None:

        @mcp.tool()
        async def search_documents(
            collection: str, query: str, k: int = 5, ctx: Context = None
        ) -> list[dict]:
            """Search one of the caller's document collections: the best chunks, with their sources."""
            found = await knowledge["retrieve"].ainvoke(
                {"collection": collection, "query": query, "k": k}, _config(ctx)
            )
            return [
                {"text": d.page_content, "metadata": json.loads(json.dumps(d.metadata, default=str))}
                for d in found
            ]

        @mcp.tool()
        async def ask(collection: str, question: str, ctx: Context = None) -> dict[str, Any]:
            """Answer a question from one of the caller's document collections, citing the chunks used."""
            answer = await knowledge["ask"].ainvoke(
                {"collection": collection, "question": question}, _config(ctx)
            )
            return json.loads(json.dumps(dict(answer), default=str))

    return mcp


def _config(ctx: Context | None, knobs: dict | None = None) -> dict:
    """The run's config: the caller behind the HTTP request (tenant, metering), and the knobs."""
    config = {"configurable": knobs or {}}
    request = getattr(getattr(ctx, "request_context", None), "request", None) if ctx is not None else None
    return run_config(request, config) if request is not None else config
