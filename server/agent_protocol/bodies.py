"""Request bodies of the Agent Protocol routes (the fields langgraph-sdk and RemoteGraph send; others are
ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.agent_protocol.runs import STREAM_MODES

THREAD_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ThreadCreate(Loose):
    thread_id: str | None = Field(None, pattern=THREAD_ID)
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(Loose):
    metadata: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class AssistantSearch(Loose):
    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class StateUpdate(Loose):
    values: dict[str, Any] | list | None = None
    as_node: str | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None


class CheckpointQuery(Loose):
    checkpoint: dict[str, Any] | None = None
    subgraphs: bool = False


class HistoryQuery(Loose):
    limit: int = Field(10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


class Command(Loose):
    """How to resume a paused run: `resume` is the value interrupt() returns (HumanInTheLoopMiddleware's
    {"decisions": [...]})."""

    resume: Any = None
    update: dict[str, Any] | None = None
    goto: list[Any] | str | None = None


class RunCreate(Loose):
    assistant_id: str
    input: dict[str, Any] | None = None
    command: Command | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "reject"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "cancel"
    on_completion: Literal["delete", "keep"] = "delete"

    @field_validator("stream_mode")
    @classmethod
    def _known_modes(cls, value: str | list[str]) -> str | list[str]:
        modes = [value] if isinstance(value, str) else value
        unknown = [m for m in modes if m not in STREAM_MODES]
        if unknown:
            raise ValueError(f"stream mode {unknown[0]!r} is not served: use {', '.join(STREAM_MODES)}")
        return value

    @property
    def modes(self) -> tuple[str, ...]:
        return (self.stream_mode,) if isinstance(self.stream_mode, str) else tuple(self.stream_mode)


class EditedAction(BaseModel):
    name: str
    args: dict[str, Any]


class Decision(BaseModel):
    """One answer to a pending call (HumanInTheLoopMiddleware's decision)."""

    type: Literal["approve", "edit", "reject", "respond"]
    edited_action: EditedAction | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _edit_has_action(self) -> Decision:
        if self.type == "edit" and self.edited_action is None:
            raise ValueError("an edit decision needs edited_action: {name, args}")
        return self


class Decisions(BaseModel):
    """command.resume for a run paused for approval: one decision per pending call, in order."""

    decisions: list[Decision]
