"""The PSP behind ``PAYMENT_PSP``: the one place that picks the gateway, so no caller names a PSP itself."""

from __future__ import annotations

from django.conf import settings

from payments.psp.gateway import PaymentGateway, PspConfigurationError


def payment_gateway() -> PaymentGateway:
    if settings.PAYMENT_PSP == "stripe":
        from payments.psp.stripe import StripeGateway

        return StripeGateway()
    raise PspConfigurationError(f"no gateway for PAYMENT_PSP={settings.PAYMENT_PSP!r}")
