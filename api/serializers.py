"""Serializer building blocks with the API's strictness: unknown fields refused, strings that must be strings."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError


class StrictSerializer(serializers.Serializer):
    """Refuses any field it does not declare: a misspelt optional field must not be silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                raise ValidationError({unknown[0]: [ErrorDetail("Unknown field.", code="unknown_field")]})
        return super().to_internal_value(data)


class PatternField(serializers.Field):
    """A JSON string matching ``pattern``; anything else fails with the field's own ``code``."""

    def __init__(self, *, pattern: str, code: str, description: str, **kwargs: Any) -> None:
        self.pattern = re.compile(pattern)
        self.code = code
        self.description = description
        kwargs.setdefault("help_text", description)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not self.pattern.fullmatch(data):
            raise ValidationError(ErrorDetail(self.description, code=self.code))
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)
