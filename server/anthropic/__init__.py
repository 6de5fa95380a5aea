"""Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) over the chat chain."""

from server.anthropic.routes import anthropic_router

__all__ = ["anthropic_router"]
