"""OpenAI's Responses API (POST /v1/responses) over the chat chain."""

from server.responses.routes import responses_router

__all__ = ["responses_router"]
