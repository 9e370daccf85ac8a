"""The storefront's payment endpoints: one view per operation, each calling one service or selector."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import client_of
from api.idempotency import KeyClaim
from api.schema import IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER, error_responses
from api.throttles import throttle, throttle_around
from api.views import ApiView, IdempotentCreateApiView
from payments.api.serializers import (
    CheckoutCreateInput,
    PaymentCreateInput,
    PaymentOrderDetailOutput,
    PaymentOutput,
    SellerBalanceOutput,
    checkout_create_arguments,
    payment_create_arguments,
    payment_order_representation,
    payment_representation,
    seller_balance_representation,
)
from payments.checkouts import checkout_create
from payments.errors import SellerNotFound
from payments.selectors import payment_get, payment_order_get, seller_paid_by
from payments.services import BuyerInfo, payment_create
from wallets.selectors import wallet_balances


def payment_attempts(request: Request, buyer: BuyerInfo, payment_method_token: str) -> dict[str, str]:
    """The throttles against card testing, which shows as many payments from one buyer or address, or one token
    tried again and again. Counted per client: two storefronts' buyer ids are different people."""
    client_id = client_of(request).pk
    return {
        "buyer": f"{client_id}:{buyer.id}",
        "buyer_ip": f"{client_id}:{buyer.ip}" if buyer.ip else "",
        "payment_method": f"{client_id}:{payment_method_token}" if payment_method_token else "",
    }


class PaymentCreateApi(IdempotentCreateApiView):
    @extend_schema(
        operation_id="payments_create",
        summary="Create a payment",
        description=(
            "Stores the payment and one payment order per seller, each `NOT_STARTED`, and queues each order for "
            "execution at the PSP with the saved payment method; read the payment to follow it. Idempotent per "
            "`Idempotency-Key`: a retry with the same key and body returns the first response again."
        ),
        parameters=[IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER],
        request=PaymentCreateInput,
        responses={
            201: OpenApiResponse(PaymentOutput, description="Created, or the replay of an earlier creation."),
            **error_responses(400, 401, 409, 415, 422),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # here to carry its schema
        return super().post(request, *args, **kwargs)

    # The payment's one statement claims the Idempotency-Key and stores the answer (api.idempotency.KeyClaim).
    claims_key = True

    def create_claimed(self, request: Request, claim: KeyClaim, *args: Any, **kwargs: Any) -> None:
        arguments = payment_create_arguments(request.data)
        client = client_of(request)
        # Counted only when the rows are written: a retry of a payment that exists fails there (its order ids are
        # taken) and gets the stored answer, uncounted. The payment's statement commits by itself, so the counts are
        # settled just before it, and a refusal stores nothing; a retry whose buyer is over the limit is refused
        # first, so it counts (it still gets its stored answer).
        attempts = payment_attempts(request, arguments["buyer"], arguments["payment_method_token"])
        with throttle_around(request, attempts, actor=client.actor) as settle:
            payment_create(client=client, **arguments, claim=claim, answer=payment_representation, before_write=settle)


class CheckoutCreateApi(IdempotentCreateApiView):
    @extend_schema(
        operation_id="checkouts_create",
        summary="Create a payment paid on the PSP's hosted page",
        description=(
            "Stores the payment, registers it with the PSP and answers with `hosted_page_url`, where the buyer pays. "
            "Every order must be in one currency. The orders are `PENDING` until the PSP's webhook reports the "
            "outcome; the buyer's redirect to `success_url` or `cancel_url` changes nothing by itself. Idempotent "
            "per `Idempotency-Key`. A 503 `psp_unavailable` stored nothing: retry with the same key."
        ),
        parameters=[IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER],
        request=CheckoutCreateInput,
        responses={
            201: OpenApiResponse(PaymentOutput, description="Created, or the replay of an earlier creation."),
            **error_responses(400, 401, 409, 415, 422, 502, 503),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # here to carry its schema
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        arguments = checkout_create_arguments(request.data)
        # Before the service, which registers the checkout at the PSP: a refused one must cost the PSP nothing. So a
        # retry of a checkout counts against its buyer, unlike a payment's.
        throttle(request, payment_attempts(request, arguments["buyer"], ""), actor=client_of(request).actor)
        event = checkout_create(client=client_of(request), **arguments)
        return Response(payment_representation(event), status=201)


class PaymentDetailApi(ApiView):
    @extend_schema(
        operation_id="payments_retrieve",
        summary="Read a payment and its orders",
        parameters=[OpenApiParameter("payment_id", str, OpenApiParameter.PATH)],
        responses={200: PaymentOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, payment_id: str) -> Response:
        return Response(payment_representation(payment_get(client=client_of(request), payment_id=payment_id)))


class PaymentOrderDetailApi(ApiView):
    @extend_schema(
        operation_id="payment_orders_retrieve",
        summary="Read one payment order",
        parameters=[OpenApiParameter("payment_order_id", str, OpenApiParameter.PATH)],
        responses={200: PaymentOrderDetailOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, payment_order_id: str) -> Response:
        order = payment_order_get(client=client_of(request), payment_order_id=payment_order_id)
        return Response(payment_order_representation(order))


class SellerBalanceApi(ApiView):
    @extend_schema(
        operation_id="seller_balance_retrieve",
        summary="Read a seller's balances per currency",
        parameters=[OpenApiParameter("seller_account", str, OpenApiParameter.PATH)],
        responses={200: SellerBalanceOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, seller_account: str) -> Response:
        if not seller_paid_by(client=client_of(request), seller_account=seller_account):
            raise SellerNotFound()
        balances = wallet_balances(seller_account=seller_account)
        return Response(seller_balance_representation(seller_account, balances))
