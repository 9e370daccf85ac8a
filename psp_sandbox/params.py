"""Stripe's v1 request encoding: ``application/x-www-form-urlencoded`` with bracket notation.

stripe-python turns ``{"metadata": {"payment_order_id": "po_1"}, "payment_method_types": ["card"]}`` into
``metadata[payment_order_id]=po_1&payment_method_types[0]=card``; Stripe also accepts ``key[]=value`` for lists.
Every value arrives as a string (``amount=1999``, ``confirm=true``); the readers below convert them and name the
offending parameter, as Stripe does, in the error they raise.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from psp_sandbox.errors import InvalidRequest

# A parameter name: a base, then any number of ``[segment]``; an empty segment appends to a list.
_NAME = re.compile(r"^(?P<base>[^\[\]]+)(?P<path>(?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
MAX_DEPTH = 5


def parse_form(raw: str) -> dict[str, Any]:
    """Decode a form body or query string into nested dicts; lists stay dicts keyed "0", "1", ... until a reader
    asks for a list (``list_param``), because only the endpoint knows whether ``metadata[0]`` is a list or a key."""
    result: dict[str, Any] = {}
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("Invalid request: the body is not valid form encoding.") from exc
    for name, value in pairs:
        match = _NAME.match(name)
        if match is None:
            raise InvalidRequest(f"Invalid parameter name: {name}", code="parameter_unknown", param=name)
        segments = [match["base"], *_SEGMENT.findall(match["path"])]
        if len(segments) > MAX_DEPTH:
            raise InvalidRequest(f"Parameter nested too deeply: {name}", code="parameter_unknown", param=name)
        _place(result, segments, value, name)
    return result


def _place(target: dict[str, Any], segments: list[str], value: str, name: str) -> None:
    node: dict[str, Any] = target
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "":
            # ``key[]=a&key[]=b``: the next free position of the list under construction.
            segment = str(len(node))
        if last:
            if segment in node:
                # Silently keeping the first or the last would hide a caller's bug; Stripe refuses it too.
                raise InvalidRequest(f"Received the parameter {name} more than once.", param=name)
            node[segment] = value
            return
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise InvalidRequest(f"Invalid object: {name} mixes a value and a hash.", param=name)
        node = child


def reject_unknown(params: dict[str, Any], allowed: set[str]) -> None:
    for name in sorted(params):
        if name not in allowed:
            raise InvalidRequest(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def str_param(params: dict[str, Any], name: str, *, required: bool = False, max_length: int = 5000) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid string: {name} must be a string.", code="parameter_invalid_string", param=name)
    if len(value) > max_length:
        raise InvalidRequest(
            f"Invalid string: {name} is longer than {max_length} characters.",
            code="parameter_invalid_string",
            param=name,
        )
    return value


def int_param(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    raw = str_param(params, name, required=required, max_length=32)
    if raw is None:
        return None
    # Digits only: Python's int() would also take "1_000", " 12" and "+12", which Stripe refuses.
    if not re.fullmatch(r"-?[0-9]+", raw):
        raise InvalidRequest(f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
    return int(raw)


def bool_param(params: dict[str, Any], name: str, *, default: bool = False) -> bool:
    raw = str_param(params, name, max_length=8)
    if raw is None:
        return default
    if raw not in {"true", "false"}:
        raise InvalidRequest(f"Invalid boolean: {raw}", code="parameter_invalid_boolean", param=name)
    return raw == "true"


def list_param(params: dict[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or any(not key.isdigit() for key in value):
        raise InvalidRequest(f"Invalid array: {name} must be a list.", code="parameter_invalid_array", param=name)
    items = [value[key] for key in sorted(value, key=int)]
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidRequest(f"Invalid array: {name}[{index}] must be a string.", param=f"{name}[{index}]")
    return items


def hash_param(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid object: {name} must be a hash.", code="parameter_invalid_object", param=name)
    return value


# Stripe's limits on metadata (docs: "Metadata"): they keep a search index and webhook payloads small.
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


def metadata_param(params: dict[str, Any], name: str = "metadata") -> dict[str, str]:
    raw = hash_param(params, name) or {}
    if len(raw) > METADATA_MAX_KEYS:
        raise InvalidRequest(f"Invalid {name}: at most {METADATA_MAX_KEYS} keys.", param=name)
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        param = f"{name}[{key}]"
        if not isinstance(value, str):
            raise InvalidRequest(f"Invalid value for {param}: metadata values are strings.", param=param)
        if len(key) > METADATA_MAX_KEY_LENGTH or len(value) > METADATA_MAX_VALUE_LENGTH:
            raise InvalidRequest(
                f"Invalid {param}: keys are at most {METADATA_MAX_KEY_LENGTH} characters and values at most "
                f"{METADATA_MAX_VALUE_LENGTH}.",
                param=param,
            )
        # An empty value means "unset this key" to Stripe; on a new object there is nothing to unset.
        if value != "":
            metadata[key] = value
    return metadata
