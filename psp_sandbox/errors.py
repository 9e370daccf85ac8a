"""Stripe's error responses: ``{"error": {"type", "code", "decline_code", "message", "param", ...}}`` and the status
codes stripe-python maps to its exception classes (400/404 → InvalidRequestError or IdempotencyError by ``type``,
401 → AuthenticationError, 402 → CardError, 409 → APIError that the library retries, 429 → RateLimitError).
"""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error the sandbox answers with, in Stripe's shape. Fields left ``None`` are omitted from the body."""

    status = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        if status is not None:
            self.status = status
        self.extra = extra or {}

    def as_error_object(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        for name in ("code", "param", "decline_code"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.code:
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        body.update(self.extra)
        return body

    def as_body(self) -> dict[str, Any]:
        return {"error": self.as_error_object()}


class InvalidRequest(StripeError):
    status = 400
    type = "invalid_request_error"


class ResourceMissing(InvalidRequest):
    status = 404

    def __init__(self, kind: str, object_id: str, *, param: str = "id", status: int = 404) -> None:
        super().__init__(f"No such {kind}: '{object_id}'", code="resource_missing", param=param, status=status)


class AuthenticationFailed(StripeError):
    status = 401
    type = "invalid_request_error"


class IdempotencyError(StripeError):
    status = 400
    type = "idempotency_error"


class IdempotencyKeyInUse(IdempotencyError):
    # Stripe answers a request whose key is still being processed with 409 and code ``idempotency_key_in_use``;
    # stripe-python retries a 409 on its own (when its retries are on), and our executor treats it as transient.
    status = 409

    def __init__(self, key: str) -> None:
        super().__init__(
            "There is currently another in-progress request using this Idempotent Key (that probably means you "
            f"submitted twice, and the other request is still going through): {key}. Please try again later.",
            code="idempotency_key_in_use",
        )


class CardError(StripeError):
    status = 402
    type = "card_error"


class ApiError(StripeError):
    status = 500
    type = "api_error"


class RateLimited(StripeError):
    status = 429
    type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="rate_limit")
