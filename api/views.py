from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import client_of
from api.events import client_ip
from api.idempotency import KeyClaim, idempotent_post
from api.models import ApiKey, Scope
from api.throttles import throttle


class JsonOnly(BaseContentNegotiation):
    """The API speaks JSON and nothing else, so there is nothing to negotiate (and no cost in doing it)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        media_type = request.content_type.split(";")[0].strip()
        return next((parser for parser in parsers if parser.media_type == media_type), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers), None) or JSONRenderer()
        return renderer, renderer.media_type


class ApiView(APIView):
    """Base of every storefront endpoint: the key's scope and the client's and address's throttles are checked
    before the handler runs."""

    content_negotiation_class = JsonOnly
    # The scope a key needs for this endpoint's POST, PATCH or DELETE; reading always needs "read".
    write_scope: str = Scope.WRITE

    def required_scope(self, method: str | None) -> str:
        return Scope.READ if method in ("GET", "HEAD", "OPTIONS") else self.write_scope

    def check_permissions(self, request: Request) -> None:
        # Throttled before the scope is checked: a leaked key without the scope must not probe without limit.
        if isinstance(request.auth, ApiKey):
            client = client_of(request)
            throttle(request, {"client": str(client.pk), "ip": client_ip(request)}, actor=client.actor, batched=True)
        super().check_permissions(request)


class IdempotentCreateApiView(ApiView):
    """Base of every storefront POST: the Idempotency-Key is required and honoured before ``create`` runs.

    ``create`` runs inside the idempotency transaction and returns a 2xx response, or raises an ApiError. With
    ``claims_key``, ``create_claimed`` runs instead: it is given the key's ``claim`` (api.idempotency.KeyClaim),
    which its one statement, a transaction of its own, settles, and the answer stored with it is the response.
    """

    claims_key = False

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        if self.claims_key:
            return idempotent_post(
                request, lambda claim: self.create_claimed(request, claim, *args, **kwargs), claims_in_handler=True
            )
        return idempotent_post(request, lambda: self.create(request, *args, **kwargs))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotImplementedError

    def create_claimed(self, request: Request, claim: KeyClaim, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError
