"""Security events raised at the web edge (API, webhooks, console sign-in): who called, from where, on which path."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from audit.models import SecurityEvent
from audit.services import security_event_record


def client_ip(request: HttpRequest) -> str:
    """The calling address: REMOTE_ADDR, or the address the last of API_TRUSTED_PROXIES proxies saw. Addresses
    further left in X-Forwarded-For are whatever the client wrote, so they are never trusted."""
    address = str(request.META.get("REMOTE_ADDR", ""))
    hops = settings.API_TRUSTED_PROXIES
    if hops:
        forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


def security_event_at(request: HttpRequest, kind: str, *, actor: str = "", detail: str = "") -> SecurityEvent | None:
    return security_event_record(
        kind=kind, actor=actor or "anonymous", ip=client_ip(request) or None, path=request.path, detail=detail
    )


def card_data_refused(request: HttpRequest, field: str) -> None:
    # The field's path only: the value is what must never be written anywhere.
    security_event_at(request, SecurityEvent.Kind.CARD_DATA_REFUSED, detail=f"in {field}")
