"""OpenAPI pieces every endpoint shares: the error body, the idempotency header, the replay marker."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from api.idempotency import HEADER, MAX_KEY_LENGTH, REPLAY_HEADER


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable; branch on this.")
    message = serializers.CharField(help_text="For people; may change.")
    field = serializers.CharField(allow_null=True, help_text="The field at fault, as a JSON path, or null.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_DESCRIPTIONS = {
    400: "Invalid request (validation, missing Idempotency-Key, card data, malformed JSON). Nothing was stored.",
    401: "Missing or invalid API key.",
    403: "The API key lacks the scope this request needs (insufficient_scope).",
    404: "No such object for this API client.",
    409: "Conflict: the Idempotency-Key is in use by a running request, or an id is already taken.",
    415: "The body must be application/json.",
    422: "The Idempotency-Key was used before with a different request.",
    429: "Too many requests (rate_limited): retry after the Retry-After header's seconds. Nothing was stored.",
    502: "A service we depend on (the PSP) refused the request. Nothing was stored.",
    503: "A service we depend on (the PSP) did not answer. Nothing was stored; retry with the same key.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error responses of an endpoint. One that authenticates (401) may also refuse a key's scope (403) and
    throttle (429), so those come with it."""
    wanted = set(statuses) | ({403, 429} if 401 in statuses else set())
    return {status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status]) for status in sorted(wanted)}


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    # What api/idempotency.py accepts: printable ASCII, not blank, at most MAX_KEY_LENGTH characters.
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]*[!-~][ -~]*$"},
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per operation (at most 255 printable ASCII characters), reused when retrying it. Kept "
    "for 24 hours.",
)

REPLAYED_HEADER = OpenApiParameter(
    REPLAY_HEADER,
    str,
    OpenApiParameter.HEADER,
    response=[201],
    description="`true` when this is the stored response of an earlier request.",
)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"}


class StrictSerializerSchema(OpenApiSerializerExtension):
    """A StrictSerializer refuses any field it does not declare: the schema says so (``additionalProperties:
    false``), so that a client, or a fuzzer, knows that an unknown field is an error."""

    target_class = "api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": False}


class PatternFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "api.serializers.PatternField"

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        field = self.target
        return {"type": "string", "pattern": f"^{field.pattern.pattern}$", "description": field.description}
