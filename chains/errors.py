"""Typed domain errors; each carries the HTTP status the server maps it to."""

from __future__ import annotations


class HfchainError(Exception):
    """Base of the errors a caller can act on; `status_code` is the HTTP mapping."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        """JSON body for an HTTP error response."""
        return {"detail": self.message, "type": self.error_type, **self.details}


class InvalidInput(HfchainError):
    """The request is well-formed JSON but its values cannot be used."""

    status_code = 422
    error_type = "invalid_request_error"


class NotFound(HfchainError):
    """The named thing (e.g. a session) does not exist."""

    status_code = 404
    error_type = "not_found"


class Forbidden(HfchainError):
    """The key is valid but its scope does not include what the request does."""

    status_code = 403
    error_type = "permission_error"


class QuotaExceeded(HfchainError):
    """The key used its requests per minute or tokens per day; retry after `retry_after` seconds."""

    status_code = 429
    error_type = "rate_limit_exceeded"


class ModelNotReady(HfchainError):
    """The model is still loading; retry shortly."""

    status_code = 503
    error_type = "model_not_ready"


class EndpointUnavailable(HfchainError):
    """The remote endpoint could not be reached or did not answer in time."""

    status_code = 503
    error_type = "endpoint_unavailable"


class EndpointError(HfchainError):
    """The remote endpoint answered with an error."""

    status_code = 502
    error_type = "endpoint_error"


class UnknownBackend(HfchainError):
    """A backend name that no builder exists for."""

    status_code = 500
    error_type = "configuration_error"


class InputTooLong(HfchainError):
    """The prompt, as it would be sent, does not fit the model's context with room for the reply."""

    status_code = 413
    error_type = "input_too_long"


class Overloaded(HfchainError):
    """More work in flight than the server admits; retry shortly."""

    status_code = 429
    error_type = "overloaded"


class KvPoolTooSmall(HfchainError):
    """A request that would need more KV memory than the server's whole pool (HFCHAIN_KV_CACHE_BYTES)."""

    status_code = 503
    error_type = "kv_pool_too_small"


class QueueTimeout(HfchainError):
    """The request waited for the model longer than the queue timeout."""

    status_code = 503
    error_type = "queue_timeout"


class SessionsUnavailable(HfchainError):
    """The sessions database could not be used."""

    status_code = 503
    error_type = "sessions_unavailable"


class UnsupportedMediaType(HfchainError):
    """An uploaded file of a kind hfchain cannot read; the message lists the kinds it can."""

    status_code = 415
    error_type = "unsupported_media_type"


class PayloadTooLarge(HfchainError):
    """An upload, or the text inside it, over a configured limit."""

    status_code = 413
    error_type = "payload_too_large"


class Conflict(HfchainError):
    """The named thing exists already (e.g. a collection of that name)."""

    status_code = 409
    error_type = "conflict"
