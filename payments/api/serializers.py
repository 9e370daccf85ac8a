"""The payment resources' shapes on the wire, shared by the payment, payment-order and (later) checkout endpoints."""

from __future__ import annotations

from typing import Any, cast

from babel import Locale
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from djmoney.money import Money
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from api.serializers import PatternField, StrictSerializer
from ledger.money import AmountError, format_amount, from_minor, parse_amount
from payments.models import OrderStatus, PaymentEvent, PaymentOrder
from payments.services import BuyerInfo, NewOrder
from wallets.models import SELLER_ACCOUNT_PATTERN
from wallets.selectors import WalletBalance

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
# ISO 3166-1 alpha-2 country codes, from the CLDR territory list minus its groupings (EU, UN, ...) and ZZ (unknown).
COUNTRIES = frozenset(str(code) for code in Locale("en").territories if len(str(code)) == 2 and str(code).isalpha()) - {
    "EU",
    "EZ",
    "UN",
    "QO",
    "XA",
    "XB",
    "ZZ",
}


def _fail(message: str, code: str) -> ValidationError:
    return ValidationError(ErrorDetail(message, code=code))


@extend_schema_field({"type": "string", "format": "email"})
class EmailField(serializers.Field):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or len(data) > 254:
            raise _fail("Enter a valid email address.", "email_invalid")
        try:
            validate_email(data)
        except DjangoValidationError:
            raise _fail("Enter a valid email address.", "email_invalid") from None
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


@extend_schema_field({"type": "string", "enum": sorted(COUNTRIES), "example": "DE"})
class CountryField(serializers.Field):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or data not in COUNTRIES:
            raise _fail('An ISO 3166-1 alpha-2 country code in capitals, such as "DE".', "country_invalid")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


@extend_schema_field({"type": "string", "enum": list(settings.PAYMENT_CURRENCIES), "example": "EUR"})
class CurrencyField(serializers.Field):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or data not in settings.PAYMENT_CURRENCIES:
            supported = ", ".join(settings.PAYMENT_CURRENCIES)
            raise _fail(f"The currency must be one of {supported}.", "currency_not_supported")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


# The pattern is ledger.money's: no sign, no exponent, no leading zero. The decimal places allowed depend on the
# currency, which a pattern on this field cannot see; more than the currency has is a 400 amount_precision_exceeded.
@extend_schema_field({"type": "string", "pattern": r"^(0|[1-9][0-9]{0,17})(\.[0-9]+)?$", "example": "19.99"})
class AmountField(serializers.Field):
    """A decimal string. A JSON number is refused, so no amount ever passes through a binary float."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise _fail('The amount must be a JSON string such as "19.99", not a number.', "amount_not_string")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


class BuyerInfoInput(StrictSerializer):
    id = PatternField(
        pattern=ID_PATTERN,
        code="buyer_id_invalid",
        description="The storefront's buyer id: 1-64 letters, digits and _ . : -",
    )
    email = EmailField(required=False)
    country = CountryField(required=False)
    name = serializers.CharField(
        required=False, max_length=200, help_text="The buyer's name, as on their card: screened by the risk check."
    )
    ip = serializers.IPAddressField(
        required=False, help_text="The buyer's IP address as the storefront saw it: the risk check's velocity per IP."
    )


class PaymentMethodInput(StrictSerializer):
    token = PatternField(
        pattern=r"[A-Za-z0-9_]{1,255}",
        code="payment_method_token_invalid",
        description="A PSP payment method token such as pm_card_visa. Never card data.",
    )


class PaymentOrderInput(StrictSerializer):
    payment_order_id = PatternField(
        pattern=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
        code="payment_order_id_invalid",
        description="Globally unique id of this order, 1-64 letters, digits, _ and -. The PSP's idempotency key.",
    )
    seller_account = PatternField(
        pattern=SELLER_ACCOUNT_PATTERN.strip("^$"),
        code="seller_account_invalid",
        description="The seller's account id: 1-64 letters, digits and _ . : -",
    )
    amount = AmountField()
    currency = CurrencyField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        currency = attrs["currency"]
        try:
            attrs["amount"] = parse_amount(attrs["amount"], currency, maximum=settings.MAX_ORDER_AMOUNTS[currency])
        except AmountError as exc:
            raise ValidationError({"amount": [ErrorDetail(exc.message, code=exc.code)]}) from None
        return attrs


class PaymentOrderListInput(serializers.ListSerializer):
    """1 to MAX_ORDERS_PER_PAYMENT orders, each payment_order_id once. The count is checked before any order."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, list):
            if not data:
                raise _fail("A payment needs at least one payment order.", "too_few_orders")
            if len(data) > settings.MAX_ORDERS_PER_PAYMENT:
                raise _fail(f"A payment holds at most {settings.MAX_ORDERS_PER_PAYMENT} orders.", "too_many_orders")
        orders = super().to_internal_value(data)
        seen: set[str] = set()
        for index, order in enumerate(orders):
            if order["payment_order_id"] in seen:
                detail: list[Any] = [{} for _ in orders]
                detail[index] = {
                    "payment_order_id": [
                        ErrorDetail(
                            "Each payment_order_id may appear once in a payment.", code="duplicate_payment_order_id"
                        )
                    ]
                }
                raise ValidationError(detail)
            seen.add(order["payment_order_id"])
        return orders


class PaymentOrderItemInput(PaymentOrderInput):
    class Meta:
        list_serializer_class = PaymentOrderListInput


class _PaymentInputBase(StrictSerializer):
    """What a payment by saved method and a checkout on the hosted page both carry."""

    checkout_id = PatternField(
        pattern=ID_PATTERN,
        code="checkout_id_invalid",
        description="The storefront's checkout id: 1-64 letters, digits and _ . : -",
    )
    buyer_info = BuyerInfoInput()


class PaymentCreateInput(_PaymentInputBase):
    payment_method = PaymentMethodInput()
    payment_orders = PaymentOrderItemInput(many=True)


class RedirectUrlField(serializers.URLField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=2000, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        if not url.lower().startswith(("https://", "http://")):
            raise _fail("An http or https URL.", "url_invalid")
        return url


class CheckoutCreateInput(_PaymentInputBase):
    payment_orders = PaymentOrderItemInput(many=True)
    success_url = RedirectUrlField(
        help_text="Where the PSP sends the buyer after paying. {PAYMENT_ID} is replaced by the payment's id."
    )
    cancel_url = RedirectUrlField(
        help_text="Where the PSP sends the buyer who gives up. {PAYMENT_ID} is replaced by the payment's id."
    )


def payment_create_arguments(body: Any) -> dict[str, Any]:
    """Validate a POST /v1/payments body into payment_create's keyword arguments, or raise ValidationError."""
    data = _PAYMENT_CREATE_INPUT.run_validation(body)
    return {**_payment_arguments(data), "payment_method_token": data["payment_method"]["token"]}


def checkout_create_arguments(body: Any) -> dict[str, Any]:
    """Validate a POST /v1/checkouts body into checkout_create's keyword arguments, or raise ValidationError."""
    data = _CHECKOUT_CREATE_INPUT.run_validation(body)
    return {**_payment_arguments(data), "success_url": data["success_url"], "cancel_url": data["cancel_url"]}


def _payment_arguments(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkout_id": data["checkout_id"],
        "buyer": BuyerInfo(**data["buyer_info"]),
        "orders": [NewOrder(**order) for order in data["payment_orders"]],
    }


class PaymentOrderOutput(serializers.Serializer):
    payment_order_id = serializers.CharField()
    seller_account = serializers.CharField(source="seller_id")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField(source="amount_currency")
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    failure_code = serializers.CharField(allow_null=True)
    next_action_url = serializers.CharField(
        allow_null=True,
        help_text="While PENDING on the buyer (3-D Secure): send the buyer here to complete the step. Null otherwise.",
    )

    @extend_schema_field(OpenApiTypes.STR)
    def get_amount(self, order: PaymentOrder) -> str:
        money = cast(Money, order.amount)
        return format_amount(money.amount, money.currency.code)

    def to_representation(self, instance: PaymentOrder) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["failure_code"] = instance.failure_code or None
        data["next_action_url"] = _next_action_url(instance)
        return data


class RefundSummaryOutput(serializers.Serializer):
    refund_id = serializers.CharField()
    amount = serializers.CharField()
    status = serializers.CharField()


class DisputeSummaryOutput(serializers.Serializer):
    dispute_id = serializers.CharField(help_text="The PSP's dispute id (dp_…).")
    amount = serializers.CharField(help_text="The part of the dispute that falls on this order.")
    status = serializers.CharField(help_text="OPEN, WON or LOST.")


class PaymentOrderDetailOutput(PaymentOrderOutput):
    payment_id = serializers.CharField(source="event.payment_id")
    released = serializers.SerializerMethodField(
        help_text="Whether the seller's funds were released (delivery confirmed, or the hold period passed)."
    )
    refunds = serializers.SerializerMethodField()
    disputes = serializers.SerializerMethodField()

    def get_released(self, order: PaymentOrder) -> bool:
        return order.released_at is not None

    @extend_schema_field(RefundSummaryOutput(many=True))
    def get_refunds(self, order: PaymentOrder) -> list[dict[str, Any]]:
        return _refund_summaries(order)

    @extend_schema_field(DisputeSummaryOutput(many=True))
    def get_disputes(self, order: PaymentOrder) -> list[dict[str, Any]]:
        return _dispute_summaries(order)


def _refund_summaries(order: PaymentOrder) -> list[dict[str, Any]]:
    return [
        {"refund_id": refund_id, "amount": format_amount(from_minor(amount, currency), currency), "status": status}
        for refund_id, amount, currency, status in order.refunds.order_by("pk").values_list(
            "refund_id", "amount", "currency", "status"
        )
    ]


def _dispute_summaries(order: PaymentOrder) -> list[dict[str, Any]]:
    rows = order.dispute_allocations.order_by("pk").values_list(
        "dispute__psp_dispute_id", "amount", "dispute__currency", "dispute__status"
    )
    return [
        {"dispute_id": dispute_id, "amount": format_amount(from_minor(amount, currency), currency), "status": status}
        for dispute_id, amount, currency, status in rows
    ]


class BuyerInfoOutput(serializers.Serializer):
    id = serializers.CharField(source="buyer_id")
    email = serializers.CharField(source="buyer_email")
    country = serializers.CharField(source="buyer_country")
    name = serializers.CharField(source="buyer_name")
    ip = serializers.IPAddressField(source="buyer_ip", allow_null=True)


class PaymentOutput(serializers.Serializer):
    payment_id = serializers.CharField()
    checkout_id = serializers.CharField()
    status = serializers.ChoiceField(choices=PaymentEvent.Status.choices, source="summary_status")
    buyer_info = BuyerInfoOutput(source="*")
    created_at = serializers.DateTimeField()
    hosted_page_url = serializers.URLField(
        allow_null=True, help_text="For a checkout: the PSP's page where the buyer pays. Null otherwise."
    )
    payment_orders = PaymentOrderOutput(many=True, source="orders.all")

    def to_representation(self, instance: PaymentEvent) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["hosted_page_url"] = instance.hosted_page_url or None
        return data


# One bound instance of the input serializer, reused for every request: DRF deep-copies its declared fields each time
# a serializer is created, which cost more than the validation itself. run_validation keeps no state on the instance
# (is_valid does; it is not used here).
_PAYMENT_CREATE_INPUT = PaymentCreateInput()
_CHECKOUT_CREATE_INPUT = CheckoutCreateInput()
_TIMESTAMP = serializers.DateTimeField()


# The responses, built directly: on the API's hottest path DRF's field-by-field rendering cost more than the rest of
# the response. The Output serializers above stay the documented contract, and a test holds both to the same output.
def payment_order_representation(order: PaymentOrder) -> dict[str, Any]:
    return {
        **_order_fields(order),
        "payment_id": order.event.payment_id,
        "released": order.released_at is not None,
        "refunds": _refund_summaries(order),
        "disputes": _dispute_summaries(order),
    }


def payment_representation(event: PaymentEvent, orders: list[PaymentOrder] | None = None) -> dict[str, Any]:
    """``orders``: the event's, when it is not stored yet (the answer a payment's statement stores with it)."""
    orders = list(event.orders.all()) if orders is None else orders
    return {
        "payment_id": event.payment_id,
        "checkout_id": event.checkout_id,
        "status": PaymentEvent.status_for(orders),
        "buyer_info": {
            "id": event.buyer_id,
            "email": event.buyer_email,
            "country": event.buyer_country,
            "name": event.buyer_name,
            "ip": event.buyer_ip,
        },
        "created_at": _TIMESTAMP.to_representation(event.created_at),
        "hosted_page_url": event.hosted_page_url or None,
        "payment_orders": [_order_fields(order) for order in orders],
    }


def _order_fields(order: PaymentOrder) -> dict[str, Any]:
    money = cast(Money, order.amount)
    return {
        "payment_order_id": order.payment_order_id,
        "seller_account": order.seller_id,
        "amount": format_amount(money.amount, money.currency.code),
        "currency": money.currency.code,
        "status": order.status,
        "failure_code": order.failure_code or None,
        "next_action_url": _next_action_url(order),
    }


def _next_action_url(order: PaymentOrder) -> str | None:
    return order.action_url if order.status == OrderStatus.PENDING and order.action_url else None


class BalanceOutput(serializers.Serializer):
    currency = serializers.CharField()
    pending = serializers.CharField(help_text="Funds awaiting release (delivery confirmed or hold period over).")
    available = serializers.CharField(
        help_text="Funds the next payout may pay. Negative when money was taken back after a payout: the seller owes "
        "it, and the next released funds net it off."
    )
    reserved = serializers.CharField(help_text="Funds held by a payout in progress.")
    held = serializers.CharField(help_text="Funds held while a buyer disputes the charge they came from.")


class SellerBalanceOutput(serializers.Serializer):
    seller_account = serializers.CharField()
    balances = BalanceOutput(many=True)


def seller_balance_representation(seller_account: str, balances: list[WalletBalance]) -> dict[str, Any]:
    def major(minor: int, currency: str) -> str:
        return format_amount(from_minor(minor, currency), currency)

    return {
        "seller_account": seller_account,
        "balances": [
            {
                "currency": b.currency,
                "pending": major(b.pending, b.currency),
                "available": major(b.available, b.currency),
                "reserved": major(b.reserved, b.currency),
                "held": major(b.held, b.currency),
            }
            for b in balances
        ],
    }
