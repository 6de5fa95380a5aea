"""One model backend per process, chosen by settings: `build_backend(settings)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.runnables import Runnable

from chains.budget import Budget
from chains.errors import ModelNotReady, UnknownBackend
from chains.knobs import with_knobs
from chains.settings import Settings


@dataclass
class Backend:
    """The models the chains run on, plus how to start and probe them."""

    name: str
    model_name: str
    llm: BaseLLM
    chat_model: BaseChatModel
    llm_knobs: dict[str, str]
    chat_knobs: dict[str, str]
    max_new_tokens: int = 256  # the default when a request does not set the knob
    budget: Callable[[], Budget] = field(repr=False, default=None)  # type: ignore[assignment]
    start: Callable[[], object] = lambda: None
    stop: Callable[[], object] = lambda: None
    is_ready: Callable[[], bool] = lambda: True
    engine: object | None = field(default=None, repr=False)
    runtime_label: str = "torch"  # what runs the model: torch, onnx-int4, onnx-fp32, endpoint

    @property
    def runtime(self) -> str:
        """What runs the model; for HFCHAIN_RUNTIME=auto, what was chosen once the model is loaded."""
        return getattr(self.engine, "runtime_name", None) or self.runtime_label

    def require_ready(self) -> None:
        """Raise ModelNotReady (503, Retry-After) while the model is loading."""
        if not self.is_ready():
            raise ModelNotReady(f"model {self.model_name} is still loading; retry shortly", retry_after=2)

    def max_new_tokens_of(self, config: dict | None) -> int:
        """The max_new_tokens a call with this config will use."""
        configurable = (config or {}).get("configurable") or {}
        return configurable.get("max_new_tokens") or self.max_new_tokens

    def configurable_llm(self) -> Runnable:
        """The text LLM with its knobs exposed in config.configurable."""
        return with_knobs(self.llm, self.llm_knobs)

    def configurable_chat_model(self) -> Runnable:
        """The chat model with its knobs exposed in config.configurable."""
        return with_knobs(self.chat_model, self.chat_knobs)


def model_source(settings: Settings) -> tuple[str | Callable[[], str], str]:
    """(what from_pretrained loads, a display name): HFCHAIN_MODEL or the embedded model's cache.

    The embedded model's source is a callable so that its one-time conversion runs while loading.
    """
    from chains.backends import embedded

    if settings.model:
        return settings.model, Path(settings.model).name or settings.model
    return lambda: str(embedded.ensure_converted(settings.cache_dir)), embedded.MODEL_NAME


def runtime_name(settings: Settings) -> str:
    """What runs the model: `endpoint`, `torch`, `onnx-<precision>`, or `auto` (decided at load)."""
    if settings.backend != "local":
        return settings.backend
    return settings.runtime if settings.runtime != "onnx" else f"onnx-{settings.onnx_precision}"


def tool_router(settings: Settings) -> object | None:
    """The router that decides tool_choice "auto" (HFCHAIN_TOOL_ROUTER; auto: for the embedded model)."""
    if settings.tool_router == "off" or (settings.tool_router == "auto" and settings.model):
        return None
    from chains.backends.encoder import shared_encoder
    from chains.tools.router import ToolRouter

    encoder = shared_encoder(settings.encoder_runtime, settings.cache_dir)
    return ToolRouter(encoder, settings.tool_router_threshold)


def build_local(settings: Settings) -> Backend:
    """In-process transformers model behind HuggingFacePipeline; loads when started."""
    from chains.backends.local import KNOB_FIELDS, LocalChatModel, LocalLLM
    from chains.backends.model import LocalModel

    source, name = model_source(settings)
    engine = LocalModel(
        source,
        name=name,
        device=settings.device,
        dtype=settings.dtype,
        threads=settings.threads,
        context_window=settings.context_window,
        margin=settings.budget_margin,
        max_batch=settings.max_batch_size,
        max_tokens_in_flight=settings.max_tokens_in_flight,
        queue_timeout=settings.queue_timeout,
        max_input_tokens=settings.max_input_tokens,
        max_prefill_tokens=settings.max_prefill_tokens,
        kv_cache_bytes=settings.kv_cache_bytes,
        prefix_cache_tokens=settings.prefix_cache_tokens,
        repetition_guard=settings.repetition_guard,
        speculation=settings.speculation,
        speculation_max_batch=settings.speculation_max_batch,
        runtime=settings.runtime,
        onnx={
            "precision": settings.onnx_precision,
            "provider": settings.onnx_provider,
            "batch_invariant": settings.onnx_batch_invariant,
            "cache_dir": settings.cache_dir,
        },
    )
    defaults = {
        "engine": engine,
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    router = tool_router(settings)

    def start() -> object:
        loading = engine.load_in_background()
        if router is not None:  # the encoder loads after the model, off the start's critical path
            loading.add_done_callback(lambda _: router.warm_in_background())
        return loading

    return Backend(
        name="local",
        model_name=name,
        llm=LocalLLM(**defaults, model_id=name),
        chat_model=LocalChatModel(**defaults, router=router),
        llm_knobs=KNOB_FIELDS,
        chat_knobs=KNOB_FIELDS,
        budget=lambda: engine.budget,
        max_new_tokens=settings.max_new_tokens,
        start=start,
        stop=engine.close,
        is_ready=lambda: engine.ready,
        engine=engine,
        runtime_label=runtime_name(settings),
    )


def build_endpoint(settings: Settings) -> Backend:
    """Remote server: HuggingFaceEndpoint for text, ChatHuggingFace over it for chat."""
    from chains.backends.endpoint import CHAT_KNOBS, LLM_KNOBS, EndpointBudget, build_endpoint_models

    llm, chat = build_endpoint_models(settings)
    budget = EndpointBudget(settings)
    name = settings.endpoint_model or settings.repo_id or settings.endpoint_url or "endpoint"
    return Backend(
        name="endpoint",
        model_name=name,
        llm=llm,
        chat_model=chat,
        llm_knobs=LLM_KNOBS,
        chat_knobs=CHAT_KNOBS,
        budget=budget.get,
        max_new_tokens=settings.max_new_tokens,
        start=budget.load_in_background,
        runtime_label="endpoint",
    )


BUILDERS: dict[str, Callable[[Settings], Backend]] = {"local": build_local, "endpoint": build_endpoint}


def build_backend(settings: Settings) -> Backend:
    """The backend named by settings.backend; an unknown name lists the valid ones."""
    builder = BUILDERS.get(settings.backend)
    if builder is None:
        raise UnknownBackend(f"unknown backend {settings.backend!r}: use one of {', '.join(BUILDERS)}")
    return builder(settings)
