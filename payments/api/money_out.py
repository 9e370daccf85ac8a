"""The storefront's endpoints for money going out: releasing an order's funds, refunds, payouts, and the seller's
payout settings. One view per operation, each calling one service or selector."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from djmoney.money import Money
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import client_of
from api.models import Scope
from api.schema import IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER, error_responses
from api.serializers import PatternField, StrictSerializer
from api.views import ApiView, IdempotentCreateApiView
from ledger.money import AmountError, format_amount, from_minor, parse_amount
from payments.api.serializers import (
    AmountField,
    CurrencyField,
    PaymentOrderDetailOutput,
    payment_order_representation,
)
from payments.errors import SellerNotFound
from payments.models import Payout, Refund
from payments.payouts import seller_payouts_create
from payments.refunds import refund_create
from payments.releases import order_funds_release
from payments.selectors import payment_order_get, payout_get, refund_get, seller_paid_by
from wallets.services import seller_payout_settings_update

PATH_ORDER = OpenApiParameter("payment_order_id", str, OpenApiParameter.PATH)
PATH_SELLER = OpenApiParameter("seller_account", str, OpenApiParameter.PATH)


def _major(minor: int, currency: str) -> str:
    return format_amount(from_minor(minor, currency), currency)


class RefundCreateInput(StrictSerializer):
    amount = AmountField(required=False, help_text="In the order's currency. Omitted: all that is left to refund.")
    reason = serializers.ChoiceField(
        choices=["requested_by_customer", "duplicate", "fraudulent"], required=False, default="requested_by_customer"
    )


class RefundOutput(serializers.Serializer):
    refund_id = serializers.CharField()
    payment_order_id = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.CharField(help_text="NOT_STARTED, EXECUTING, PENDING, UNKNOWN, SUCCEEDED or FAILED.")
    failure_code = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


def refund_representation(refund: Refund) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "payment_order_id": refund.order.payment_order_id,
        "amount": _major(refund.amount, refund.currency),
        "currency": refund.currency,
        "reason": refund.reason,
        "status": refund.status,
        "failure_code": refund.failure_code or None,
        "created_at": serializers.DateTimeField().to_representation(refund.created_at),
    }


class PayoutOutput(serializers.Serializer):
    payout_id = serializers.CharField()
    seller_account = serializers.CharField()
    amount = serializers.CharField(help_text="Taken from the seller's balance in `currency`.")
    currency = serializers.CharField()
    payout_amount = serializers.CharField(help_text="What the seller receives, in `payout_currency`.")
    payout_currency = serializers.CharField()
    fx_rate = serializers.CharField(allow_null=True)
    status = serializers.CharField(help_text="NOT_STARTED, EXECUTING, UNKNOWN, PAID or FAILED.")
    failure_code = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class PayoutListOutput(serializers.Serializer):
    payouts = PayoutOutput(many=True)


def payout_representation(payout: Payout) -> dict[str, Any]:
    return {
        "payout_id": payout.payout_id,
        "seller_account": payout.seller_id,
        "amount": _major(payout.amount, payout.currency),
        "currency": payout.currency,
        "payout_amount": _major(payout.payout_amount, payout.payout_currency),
        "payout_currency": payout.payout_currency,
        "fx_rate": str(payout.fx_rate) if payout.fx_rate is not None else None,
        "status": payout.status,
        "failure_code": payout.failure_code or None,
        "created_at": serializers.DateTimeField().to_representation(payout.created_at),
    }


class PayoutCreateInput(StrictSerializer):
    currency = CurrencyField(required=False, help_text="Pay out this balance only. Omitted: every balance.")


class SellerSettingsInput(StrictSerializer):
    payout_account = PatternField(
        pattern=r"acct_[A-Za-z0-9_]{1,250}",
        code="payout_account_invalid",
        description="The seller's connected account at the PSP, such as acct_1Nv0FGQ9RKHgCVdK.",
        required=False,
    )
    payout_currency = serializers.CharField(
        required=False, allow_blank=True, max_length=3, help_text="Pay this seller in this currency; empty: as earned."
    )

    def validate_payout_currency(self, value: str) -> str:
        if value and value not in settings.PAYOUT_CURRENCIES:
            raise ValidationError(
                ErrorDetail(f"Payouts are made in {', '.join(settings.PAYOUT_CURRENCIES)}.", code="currency_invalid")
            )
        return value


class SellerSettingsOutput(serializers.Serializer):
    seller_account = serializers.CharField()
    payout_account = serializers.CharField(allow_null=True)
    payout_currency = serializers.CharField(allow_null=True)


class OrderReleaseApi(ApiView):
    write_scope = Scope.PAYOUTS

    @extend_schema(
        operation_id="payment_orders_release",
        summary="Release an order's funds to its seller (delivery confirmed)",
        description=(
            "Moves the order's seller funds from pending to available, once; releasing again changes nothing. "
            "Funds also release by themselves FUNDS_HOLD_DAYS after capture."
        ),
        parameters=[PATH_ORDER],
        request=None,
        responses={200: PaymentOrderDetailOutput, **error_responses(401, 404, 409)},
    )
    def post(self, request: Request, payment_order_id: str) -> Response:
        order = order_funds_release(
            payment_order_id=payment_order_id, actor=f"client:{client_of(request).pk}", client=client_of(request)
        )
        return Response(payment_order_representation(order))


class RefundCreateApi(IdempotentCreateApiView):
    write_scope = Scope.REFUNDS

    @extend_schema(
        operation_id="refunds_create",
        summary="Refund a payment order, in full or in part",
        description=(
            "Books the refund at once and sends it to the PSP; read it to follow it. Never more than is left to "
            "refund: a larger amount is a 400 `refund_exceeds_captured` and changes nothing. Idempotent per "
            "`Idempotency-Key`."
        ),
        parameters=[PATH_ORDER, IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER],
        request=RefundCreateInput,
        responses={201: RefundOutput, **error_responses(400, 401, 404, 409, 415, 422)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Any:  # here to carry its schema
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        client = client_of(request)
        data = RefundCreateInput().run_validation(request.data)
        order = payment_order_get(client=client, payment_order_id=kwargs["payment_order_id"])
        amount = None
        if "amount" in data:
            currency = cast(Money, order.amount).currency.code
            try:
                amount = parse_amount(data["amount"], currency)
            except AmountError as exc:
                raise ValidationError({"amount": [ErrorDetail(exc.message, code=exc.code)]}) from None
        refund = refund_create(
            client=client,
            payment_order_id=order.payment_order_id,
            amount=amount,
            reason=data["reason"],
            actor=f"client:{client.pk}",
        )
        return Response(refund_representation(refund), status=201)


class RefundDetailApi(ApiView):
    @extend_schema(
        operation_id="refunds_retrieve",
        summary="Read a refund",
        parameters=[OpenApiParameter("refund_id", str, OpenApiParameter.PATH)],
        responses={200: RefundOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, refund_id: str) -> Response:
        return Response(refund_representation(refund_get(client=client_of(request), refund_id=refund_id)))


class SellerPayoutCreateApi(IdempotentCreateApiView):
    write_scope = Scope.PAYOUTS

    @extend_schema(
        operation_id="seller_payouts_create",
        summary="Pay a seller out now",
        description=(
            "One payout per balance (or the one in `currency`) whose available funds reach the payout minimum, "
            "sent to the seller's payout account. 409 `nothing_to_pay_out` when none does, "
            "`payout_account_missing` when the seller has no payout account. Idempotent per `Idempotency-Key`."
        ),
        parameters=[PATH_SELLER, IDEMPOTENCY_KEY_PARAMETER, REPLAYED_HEADER],
        request=PayoutCreateInput,
        responses={201: PayoutListOutput, **error_responses(400, 401, 404, 409, 415, 422)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Any:  # here to carry its schema
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        client = client_of(request)
        data = PayoutCreateInput().run_validation(request.data)
        seller_account = kwargs["seller_account"]
        if not seller_paid_by(client=client, seller_account=seller_account):
            raise SellerNotFound()
        payouts = seller_payouts_create(
            seller_account=seller_account, currency=data.get("currency"), actor=f"client:{client.pk}"
        )
        return Response({"payouts": [payout_representation(payout) for payout in payouts]}, status=201)


class PayoutDetailApi(ApiView):
    @extend_schema(
        operation_id="payouts_retrieve",
        summary="Read a payout",
        parameters=[OpenApiParameter("payout_id", str, OpenApiParameter.PATH)],
        responses={200: PayoutOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, payout_id: str) -> Response:
        return Response(payout_representation(payout_get(client=client_of(request), payout_id=payout_id)))


class SellerSettingsApi(ApiView):
    write_scope = Scope.PAYOUTS

    @extend_schema(
        operation_id="sellers_update",
        summary="Set where and in which currency a seller is paid out",
        parameters=[PATH_SELLER],
        request=SellerSettingsInput,
        responses={200: SellerSettingsOutput, **error_responses(400, 401, 404, 415)},
    )
    def patch(self, request: Request, seller_account: str) -> Response:
        if not seller_paid_by(client=client_of(request), seller_account=seller_account):
            raise SellerNotFound()
        data = SellerSettingsInput().run_validation(request.data)
        seller = seller_payout_settings_update(seller_account=seller_account, **data)
        return Response(
            {
                "seller_account": seller.account,
                "payout_account": seller.payout_account or None,
                "payout_currency": seller.payout_currency or None,
            }
        )
