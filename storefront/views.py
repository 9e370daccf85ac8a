"""The demo storefront: what a marketplace's checkout does with this backend, in a few pages.

A cart with items from two sellers, paid either on the PSP's hosted page (``checkout_create``) or with a saved
payment method (``payment_create``), and a result page that follows the payment live. It calls the same services
as the REST API, as the demo API client, so what it shows is what the API does. On only with the sandbox PSP
(``DEMO_STOREFRONT``): a real deployment has its own storefront.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from api.errors import ApiError
from api.models import ApiClient
from api.services import api_client_create
from payments.api.serializers import payment_representation
from payments.checkouts import PAYMENT_ID_PLACEHOLDER, checkout_abandon, checkout_create
from payments.ids import new_public_id
from payments.models import PaymentEvent
from payments.psp.gateway import PspConfigurationError, TransientPspError, UnknownPspOutcome
from payments.selectors import payment_get
from payments.services import BuyerInfo, NewOrder, payment_create
from wallets.management.commands.seed_demo import CLIENT_NAME

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CartItem:
    seller_account: str
    seller_name: str
    product: str
    amount: Decimal


CURRENCY = "EUR"
CART = (
    CartItem("seller_7", "Ada's Ceramics", "Stoneware mug, speckled glaze", Decimal("18.50")),
    CartItem("seller_9", "Bolt Bikes", "Brass bicycle bell", Decimal("12.00")),
)
BUYER = BuyerInfo(id="demo_buyer", email="buyer@example.com", country="DE")
# The sandbox's test payment methods, as a storefront would list a buyer's saved cards.
SAVED_CARDS = (
    ("pm_card_visa", "Visa ending 4242: succeeds"),
    ("pm_card_chargeDeclined", "Visa ending 0002: declined"),
    ("pm_card_chargeDeclinedInsufficientFunds", "Visa ending 9995: insufficient funds"),
    ("pm_card_authenticationRequired", "Visa ending 3184: asks for 3-D Secure"),
    ("pm_card_processing", "Visa ending 0077: processing, succeeds a little later"),
)


def _client() -> ApiClient:
    client = ApiClient.objects.filter(name=CLIENT_NAME, revoked_at__isnull=True).first()
    return client or api_client_create(name=CLIENT_NAME).client


def _orders() -> list[NewOrder]:
    return [NewOrder(new_public_id("po"), item.seller_account, item.amount, CURRENCY) for item in CART]


def _checkout_id() -> str:
    return new_public_id("cart")


@require_GET
def cart(request: HttpRequest, error: str = "") -> HttpResponse:
    context = {
        "items": CART,
        "currency": CURRENCY,
        "total": sum(item.amount for item in CART),
        "saved_cards": SAVED_CARDS,
        "error": error,
    }
    return render(request, "storefront/cart.html", context, status=400 if error else 200)


@require_POST
def pay_on_hosted_page(request: HttpRequest) -> HttpResponse:
    # The URL's own slot is a plain word: reverse() would percent-encode the braces of the placeholder.
    page = request.build_absolute_uri(reverse("storefront:payment", args=["PAYMENT_ID"]))
    page = page.replace("PAYMENT_ID", PAYMENT_ID_PLACEHOLDER)
    try:
        event = checkout_create(
            client=_client(),
            checkout_id=_checkout_id(),
            buyer=BUYER,
            orders=_orders(),
            success_url=f"{page}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{page}cancel",
        )
    except ApiError as exc:
        return cart(request, error=exc.message)
    return redirect(event.hosted_page_url)


@require_POST
def pay_with_saved_card(request: HttpRequest) -> HttpResponse:
    token = request.POST.get("payment_method", "")
    if token not in dict(SAVED_CARDS):
        return HttpResponseBadRequest("Choose one of the saved cards.")
    event = payment_create(
        client=_client(), checkout_id=_checkout_id(), buyer=BUYER, payment_method_token=token, orders=_orders()
    )
    return redirect("storefront:payment", payment_id=event.payment_id)


def _payment(payment_id: str) -> PaymentEvent:
    return payment_get(client=_client(), payment_id=payment_id)


@require_GET
def payment_page(request: HttpRequest, payment_id: str) -> HttpResponse:
    try:
        event = _payment(payment_id)
    except ApiError:
        return render(request, "storefront/not_found.html", status=404)
    return render(
        request,
        "storefront/payment.html",
        {"payment": payment_representation(event), "cancelled": "cancelled" in request.GET},
    )


@require_GET
def payment_status(request: HttpRequest, payment_id: str) -> HttpResponse:
    try:
        event = _payment(payment_id)
    except ApiError as exc:
        return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=exc.status_code)
    return JsonResponse(payment_representation(event))


@require_GET
def payment_cancel(request: HttpRequest, payment_id: str) -> HttpResponse:
    """The hosted page's cancel link: close the PSP's page, so it cannot be paid later; its expiry webhook fails
    the orders. Showing the result page afterwards, as for any return from the PSP."""
    try:
        event = _payment(payment_id)
    except ApiError:
        return render(request, "storefront/not_found.html", status=404)
    try:
        checkout_abandon(event=event)
    except (TransientPspError, UnknownPspOutcome, PspConfigurationError):
        # The PSP did not take the request: its page expires by itself later, and its expiry webhook fails the
        # orders then. The buyer still sees the status.
        logger.warning("could not close the hosted page", extra={"payment_id": payment_id}, exc_info=True)
    return redirect(reverse("storefront:payment", args=[payment_id]) + "?cancelled=1")
