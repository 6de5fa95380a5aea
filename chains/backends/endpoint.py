"""Endpoint backend: HuggingFaceEndpoint (TGI text generation) and ChatHuggingFace over it (chat)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint
from pydantic import model_validator

from chains.budget import Budget
from chains.errors import EndpointError, EndpointUnavailable, UnknownBackend
from chains.stops import StopFilter
from chains.tokens import EstimatedTokens, Tokens
from chains.tools.calls import openai_tools

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 4096  # when neither HFCHAIN_CONTEXT_WINDOW nor a tokenizer config says

LLM_KNOBS = {
    "max_new_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop_sequences",
    "seed": "seed",
}
CHAT_KNOBS = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
}


@contextmanager
def endpoint_errors(target: str):
    """Turn transport and HTTP failures into errors that name the endpoint and the fix."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except httpx.TransportError as error:
        raise EndpointUnavailable(
            f"endpoint {target} is unreachable ({type(error).__name__}: {error}); check that it is "
            "running and HFCHAIN_ENDPOINT_URL, or raise HFCHAIN_ENDPOINT_TIMEOUT",
            endpoint=target,
            retry_after=5,
        ) from error
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        raise EndpointError(
            f"endpoint {target} answered HTTP {status}: {error}", endpoint=target, upstream_status=status
        ) from error


class EndpointErrorsMixin:
    """Wraps the four generation entry points with endpoint_errors."""

    def _target(self) -> str:
        llm = getattr(self, "llm", self)
        return llm.endpoint_url or llm.repo_id or llm.model

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        with endpoint_errors(self._target()):
            return super()._generate(*args, **kwargs)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        with endpoint_errors(self._target()):
            return await super()._agenerate(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with endpoint_errors(self._target()):
            yield from super()._stream(*args, **kwargs)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with endpoint_errors(self._target()):
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk


class EndpointLLM(EndpointErrorsMixin, HuggingFaceEndpoint):
    """HuggingFaceEndpoint with OpenAI-style knobs (temperature 0 = greedy) and stream-safe stops."""

    @model_validator(mode="before")
    @classmethod
    def _drop_derived_model(cls, values: Any) -> Any:
        # configurable fields re-create the model from its fields, `model` included, which the
        # stock validator then refuses next to endpoint_url/repo_id: `model` is derived from them
        if isinstance(values, dict) and (values.get("endpoint_url") or values.get("repo_id")):
            values = {k: v for k, v in values.items() if k != "model"}
        return values

    @property
    def _default_params(self) -> dict[str, Any]:
        params = super()._default_params
        greedy = not self.temperature
        params.update(
            do_sample=not greedy,
            temperature=None if greedy else self.temperature,
            top_p=None if greedy or (self.top_p or 1) >= 1 else self.top_p,  # TGI wants 0 < top_p < 1
            stop=list(self.stop_sequences or []),
        )
        return params

    def _stream(self, prompt: str, stop: list[str] | None = None, *args: Any, **kwargs: Any) -> Iterator[Any]:
        stops = StopFilter([*(self.stop_sequences or []), *(stop or [])])
        for chunk in super()._stream(prompt, stop, *args, **kwargs):
            chunk.text = stops.feed(chunk.text)  # a stop split across tokens is caught here
            if chunk.text:
                yield chunk
            if stops.stopped:
                return

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        stops = StopFilter([*(self.stop_sequences or []), *(stop or [])])
        async for chunk in super()._astream(prompt, stop, *args, **kwargs):
            chunk.text = stops.feed(chunk.text)
            if chunk.text:
                yield chunk
            if stops.stopped:
                return


class EndpointChatModel(EndpointErrorsMixin, ChatHuggingFace):
    """ChatHuggingFace over an endpoint that also sends top_p and seed."""

    # None, not False: configurable fields re-create the model passing every field, and an explicit
    # streaming=False would make langchain-core turn .stream() into a single-chunk invoke
    streaming: bool | None = None

    @property
    def _default_params(self) -> dict[str, Any]:
        params = super()._default_params
        extra = {"top_p": self.top_p, "seed": self.seed}
        return {**{k: v for k, v in extra.items() if v is not None}, **params}

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Tools for the remote server, with any tool_choice (the stock one refuses a tool_choice with
        more than one tool)."""
        return self.bind(tools=openai_tools(list(tools)), tool_choice=tool_choice, **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        return super()._generate(*args, **wire_options(kwargs))

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        return await super()._agenerate(*args, **wire_options(kwargs))

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from super()._stream(*args, **wire_options(kwargs))

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in super()._astream(*args, **wire_options(kwargs)):
            yield chunk


def wire_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Tool options as InferenceClient.chat_completion takes them: OpenAI's tool_choice values (LangChain's
    "any" / True / a bare name mapped), no parallel_tool_calls (it has no such parameter)."""
    kwargs = {k: v for k, v in kwargs.items() if k != "parallel_tool_calls" and v is not None}
    choice = kwargs.get("tool_choice")
    if choice in ("any", True):
        kwargs["tool_choice"] = "required"
    elif isinstance(choice, str) and choice not in ("auto", "none", "required"):
        kwargs["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return kwargs


class EndpointBudget:
    """The endpoint's budget: exact with HFCHAIN_TOKENIZER (loaded on first use), else estimated."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._budget: Budget | None = None
        self._lock = threading.Lock()

    def get(self) -> Budget:
        """The budget, loading the tokenizer the first time."""
        with self._lock:
            if self._budget is None:
                try:
                    self._budget = self._load()
                except (OSError, ValueError) as error:
                    raise UnknownBackend(
                        f"HFCHAIN_TOKENIZER={self.settings.tokenizer!r} could not be loaded ({error}): "
                        "give a hub id or a local folder with the served model's tokenizer, or unset it"
                    ) from error
            return self._budget

    def load_in_background(self) -> None:
        """Load the tokenizer now, off the request path (errors surface on the first request)."""
        threading.Thread(target=self._try_get, name="hfchain-tokenizer", daemon=True).start()

    def _try_get(self) -> None:
        try:
            self.get()
        except UnknownBackend as error:
            log.error("%s", error)

    def _load(self) -> Budget:
        source, context = self.settings.tokenizer, self.settings.context_window
        if not source:
            log.warning("no HFCHAIN_TOKENIZER: token counts for the endpoint are estimates")
            return Budget(
                EstimatedTokens(),
                context or DEFAULT_CONTEXT,
                self.settings.budget_margin,
                self.settings.max_input_tokens,
            )
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
        if context is None:
            config = AutoConfig.from_pretrained(source)
            context = getattr(config, "max_position_embeddings", None) or DEFAULT_CONTEXT
        return Budget(Tokens(tokenizer), context, self.settings.budget_margin, self.settings.max_input_tokens)


def build_endpoint_models(settings: Any) -> tuple[EndpointLLM, EndpointChatModel]:
    """The text-generation LLM and the chat model for the configured endpoint."""
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    target = (
        {"endpoint_url": settings.endpoint_url} if settings.endpoint_url else {"repo_id": settings.repo_id}
    )
    # langchain-huggingface never sends the HF token to other hosts; their own key goes as a header
    key = settings.endpoint_api_key.get_secret_value() if settings.endpoint_api_key else None
    server_kwargs = {"headers": {"Authorization": f"Bearer {key}"}} if key else {}
    llm = EndpointLLM(
        **target,
        huggingfacehub_api_token=token,
        server_kwargs=server_kwargs,
        timeout=settings.endpoint_timeout,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        typical_p=None,
    )
    model_kwargs = {"model": settings.endpoint_model} if settings.endpoint_model else {}
    chat = EndpointChatModel(
        llm=llm,
        model_kwargs=model_kwargs,
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        stream_usage=True,  # token counts on streams too (the OpenAI route reports them)
    )
    return llm, chat
