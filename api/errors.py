"""Errors every app raises to the API, and the one handler that renders them.

Every error leaves the API as ``{"error": {"code": ..., "message": ..., "field": ...}}``. Codes are stable: clients
branch on them, so a code is never renamed, only added.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response


class ApiError(Exception):
    """A refusal the caller can act on. Subclasses fix the HTTP status; instances carry a stable code."""

    status_code = 400
    default_code = "invalid_request"
    default_message = "The request is invalid."
    retry_after_seconds: int | None = None  # sent as Retry-After when set

    def __init__(self, message: str | None = None, *, code: str | None = None, field: str | None = None) -> None:
        self.code = code or self.default_code
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)

    def after_refusal(self, request: Any) -> None:
        """Runs when the refusal is answered, after any transaction the request opened has rolled back: what it
        writes (a security event) stays."""


class InvalidInput(ApiError):
    status_code = 400


class CardDataNotAllowed(InvalidInput):
    default_code = "card_data_not_allowed"
    default_message = "Card numbers are not accepted. Send a payment method token from the PSP instead."


class Forbidden(ApiError):
    status_code = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    default_code = "not_found"
    default_message = "No such object."


class Conflict(ApiError):
    status_code = 409
    default_code = "conflict"


class Unprocessable(ApiError):
    status_code = 422
    default_code = "unprocessable"


class UpstreamUnavailable(ApiError):
    """A service we depend on did not answer: nothing was stored; the same request may be sent again later."""

    status_code = 503
    default_code = "upstream_unavailable"
    retry_after_seconds = 5


class UpstreamRefused(ApiError):
    """A service we depend on refused our request: our configuration is wrong, and retrying will not help."""

    status_code = 502
    default_code = "upstream_refused"


# DRF's own validation codes, renamed into ours so that clients see one vocabulary.
_DRF_CODES = {
    "required": "field_required",
    "null": "field_required",
    "blank": "field_blank",
    "invalid": "field_invalid",
    "max_length": "field_too_long",
    "min_length": "field_too_short",
    "not_a_list": "field_not_a_list",
    "not_a_dict": "field_not_an_object",
    "invalid_choice": "field_invalid_choice",
    "max_string_length": "field_too_long",
}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER. Anything not handled here is a bug and surfaces as a 500."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        exc.after_refusal(context["request"])
        if exc.retry_after_seconds is not None:
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status_code, headers=headers)
    if isinstance(exc, drf.ValidationError):
        field, detail = _first_error(exc.detail, "")
        code = _DRF_CODES.get(detail.code or "", detail.code or "field_invalid")
        return Response(error_body(code, str(detail), field or None), status=400)
    if isinstance(exc, Http404 | drf.NotFound):
        return Response(error_body("not_found", "No such object."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        # RFC 6750: a 401 names the scheme the client should use.
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return Response(error_body("authentication_failed", str(exc.detail)), status=401, headers=headers)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, drf.ParseError):
        return Response(error_body("invalid_json", str(exc.detail)), status=400)
    if isinstance(exc, drf.APIException):
        code = exc.default_code
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    return None


def _first_error(detail: Any, path: str) -> tuple[str, drf.ErrorDetail]:
    """Depth-first, in the serializer's field order: the first problem, and the JSON path to the field at fault."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if not value:
                continue
            if key == "non_field_errors":
                return _first_error(value, path)
            return _first_error(value, _child_path(path, key))
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if not value:
                continue
            if isinstance(value, dict | list):
                return _first_error(value, f"{path}[{index}]")
            return _first_error(value, path)
    if isinstance(detail, drf.ErrorDetail):
        return path, detail
    return path, drf.ErrorDetail(str(detail), code="field_invalid")


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, int):  # a list serializer's errors, keyed by index
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)
