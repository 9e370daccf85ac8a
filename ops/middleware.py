"""The request id of every web request (ours, and the sandbox PSP's): taken from ``X-Request-ID`` when the caller
sent a sane one, else made here; bound to the log context for the whole request and returned in the response.

First in MIDDLEWARE, so that every line logged while the request runs carries it. It costs a header read, a dict
copy and a header write: the POST /v1/payments path is benchmarked.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from api.carddata import contains_card_number
from ops import context

HEADER = "X-Request-ID"


def request_id_from(value: str | None) -> str:
    # A card number is sane by shape, and would be masked in every log line, losing the correlation: made anew.
    if value and context.sane_request_id(value) and not contains_card_number(value):
        return value
    return context.new_request_id()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        token = context.bind(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            # gunicorn's threads serve one request after another: the next one must not inherit this one's ids.
            context.reset(token)
        response[HEADER] = request_id
        return response
