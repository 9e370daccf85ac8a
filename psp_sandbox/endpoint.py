"""What makes a plain Django view speak Stripe's HTTP API: API-key authentication, form decoding, idempotent POSTs,
JSON answers and Stripe's error body, and the headers stripe-python reads (``Request-Id``, ``Idempotent-Replayed``).

Deliberately separate from the project's own API (``api/``): the sandbox mimics Stripe, not us.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from psp_sandbox import config as sandbox_config
from psp_sandbox import context, faults, idempotency
from psp_sandbox.errors import ApiError, AuthenticationFailed, InvalidRequest, RateLimited, StripeError
from psp_sandbox.models import stripe_id
from psp_sandbox.params import parse_form

FORM = "application/x-www-form-urlencoded"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """One authenticated API call: who made it, its decoded parameters, and the sandbox's own address (for URLs it
    hands out, such as an authentication page)."""

    request: HttpRequest
    api_key: str
    params: dict[str, Any]

    @property
    def base_url(self) -> str:
        return f"{self.request.scheme}://{self.request.get_host()}"


# A view body: returns (status, Stripe object or error body); raises StripeError to refuse the call.
Operation = Callable[..., tuple[int, dict[str, Any]]]


def stripe_endpoint(methods: dict[str, Operation], *, control: bool = False) -> Callable[..., HttpResponse]:
    """One URL, one operation per HTTP method. POSTs go through the idempotency layer; GETs are reads.

    ``control``: one of the sandbox's own control calls (``/v1/sandbox/…``), which also take JSON bodies and are
    never struck by the API faults."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        operation = methods.get(request.method or "")
        if operation is None:
            return unrecognized_url(request)
        # Alphanumeric like Stripe's, not hex: a hex id is mostly digits, and a run of 13 Luhn-valid ones would be
        # taken for a card number by anyone scanning the events that carry it.
        request_id = stripe_id("req", 14)
        key = request.headers.get(idempotency.HEADER) if request.method == "POST" else None
        with context.request_scope(request_id, key):
            if control:
                response = _serve(request, operation, kwargs, control=True)
            else:
                response = _serve_with_faults(request, operation, kwargs, key=key)
        # One line per call with the sandbox's id for it beside the caller's (the log context's request_id): what a
        # PSP's support would search for either side's id.
        logger.info(
            "%s %s: %d",
            request.method,
            request.path,
            response.status_code,
            extra={"psp_request_id": request_id, "idempotency_key": key or ""},
        )
        return response

    return view


def _serve_with_faults(
    request: HttpRequest, operation: Operation, kwargs: dict[str, Any], *, key: str | None
) -> HttpResponse:
    """An API call through the configured faults (psp_sandbox/faults.py): some are refused before anything happens,
    some are held past the client's timeout, some lose their answer after the work committed."""
    config = sandbox_config.current()
    if config.latency_ms:
        time.sleep(config.latency_ms / 1000)
    if not config.api_faults_on:
        return _serve(request, operation, kwargs, control=False)
    if request.method == "POST":
        try:
            discriminator = key or idempotency.fingerprint(_params(request))
        except StripeError:
            discriminator = "unparseable"
    else:
        discriminator = request.META.get("QUERY_STRING", "")
    identity = f"{request.method} {request.path} {discriminator}"
    fault = faults.api_fault(config, identity, faults.attempt_of(identity))
    if fault == "reset":
        request.META[faults.RESET_MARK] = True
        return HttpResponse(status=204)  # never sent: psp_sandbox/wsgi.py resets the connection instead
    if fault == "429":
        return error_response(RateLimited("Too many requests hit the API too quickly (sandbox fault injection)."))
    if fault == "5xx":
        return error_response(ApiError("An unexpected error occurred (sandbox fault injection)."))
    if fault == "timeout":
        time.sleep(config.fault_timeout_seconds)
    response = _serve(request, operation, kwargs, control=False)
    if fault == "lost_response":
        request.META[faults.RESET_MARK] = True
    return response


def _serve(request: HttpRequest, operation: Operation, kwargs: dict[str, Any], *, control: bool) -> HttpResponse:
    try:
        api_key = _authenticate(request)
        call = Call(request=request, api_key=api_key, params=_params(request, json_allowed=control))
        if request.method != "POST":
            status, body = operation(call, **kwargs)
            return _respond(status, json.dumps(body, indent=2))
        outcome = idempotency.run_post(
            api_key=api_key,
            key=request.headers.get(idempotency.HEADER),
            method=request.method or "POST",
            path=request.path,
            params=call.params,
            handler=functools.partial(operation, call, **kwargs),
        )
    except StripeError as exc:
        return _respond(exc.status, json.dumps(exc.as_body(), indent=2))
    response = _respond(outcome.status, outcome.body)
    if request.headers.get(idempotency.HEADER):
        response["Idempotency-Key"] = request.headers[idempotency.HEADER]
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


@csrf_exempt
def unrecognized_url(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    error = InvalidRequest(
        f"Unrecognized request URL ({request.method}: {request.path}). The sandbox speaks a subset of Stripe's API v1.",
        status=404,
    )
    return _respond(error.status, json.dumps(error.as_body(), indent=2))


def server_error(request: HttpRequest) -> HttpResponse:
    body = {
        "error": {"type": "api_error", "message": "An unexpected error occurred in the sandbox; it has been logged."}
    }
    return _respond(500, json.dumps(body, indent=2))


def authenticate_request(request: HttpRequest) -> str:
    """The API key of a request a non-JSON endpoint serves (a file's contents); raises AuthenticationFailed."""
    return _authenticate(request)


def error_response(error: StripeError) -> HttpResponse:
    return _respond(error.status, json.dumps(error.as_body(), indent=2))


def _authenticate(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        # ``curl -u sk_test_…:``: the key is the user name, the password empty.
        try:
            key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        raise AuthenticationFailed(
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
    if not hmac.compare_digest(key.encode(), settings.STRIPE_API_KEY.encode()):
        raise AuthenticationFailed(f"Invalid API Key provided: {_masked(key)}", code="api_key_invalid")
    return key


def _masked(key: str) -> str:
    # Stripe shows the prefix and the last four characters, never the whole key.
    prefix = key[:8] if key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")) else ""
    return f"{prefix}{'*' * max(len(key) - len(prefix) - 4, 0)}{key[-4:]}"


def _params(request: HttpRequest, *, json_allowed: bool = False) -> dict[str, Any]:
    if request.method != "POST":
        return parse_form(request.META.get("QUERY_STRING", ""))
    content_type = (request.content_type or "").lower()
    if json_allowed and content_type == "application/json":
        try:
            decoded = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise InvalidRequest("Invalid request: the body is not valid JSON.") from exc
        if not isinstance(decoded, dict):
            raise InvalidRequest("Invalid request: the JSON body must be an object.")
        return decoded
    if request.body and content_type != FORM:
        raise InvalidRequest(f"Invalid request: Stripe's API v1 takes {FORM} bodies, not {content_type or 'none'}.")
    try:
        raw = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("Invalid request: the body is not UTF-8.") from exc
    # Stripe takes POST parameters from the body only; a query string beside it is a caller's mistake.
    stray = sorted(parse_form(request.META.get("QUERY_STRING", "")))
    if stray:
        raise InvalidRequest(f"Received unknown parameter: {stray[0]}", code="parameter_unknown", param=stray[0])
    return parse_form(raw)


def _respond(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    request = context.current()
    response["Request-Id"] = request.request_id if request is not None else stripe_id("req", 14)
    response["Cache-Control"] = "no-cache, no-store"
    return response
