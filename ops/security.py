"""Browser-facing protections: the Content-Security-Policy on every page we serve, and the admin sign-in throttle.

The Content-Security-Policy on every page we serve (the finance console, the demo storefront, the API docs).

No inline script anywhere (the storefront's and the docs' scripts are files), so a script injected into a page
cannot run. Inline styles stay allowed: the admin and our templates use style attributes, which cannot run code.
Forms may post to us and to the PSP's hosted page (a checkout's redirect goes there). Frames are refused
(clickjacking), as X-Frame-Options says for older browsers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import reverse

from api.carddata import find_card_number
from api.events import card_data_refused, client_ip, security_event_at
from audit.models import SecurityEvent

logger = logging.getLogger(__name__)


def content_security_policy() -> str:
    return _policy(settings.STRIPE_API_BASE)


@functools.lru_cache(maxsize=4)
def _policy(psp_base: str) -> str:
    # The hosted payment page lives at the PSP: Stripe's on checkout.stripe.com, the sandbox's on its own address.
    psp = urlsplit(psp_base or "https://checkout.stripe.com")
    psp_origin = f"{psp.scheme}://{psp.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action 'self' {psp_origin}",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", content_security_policy())
        return response


def _login_key(address: str, username: str) -> str:
    digest = hashlib.sha256(f"{address}\0{username.casefold()}".encode()).hexdigest()[:32]
    return f"admin-login-failures:{digest}"


class AdminLoginThrottleMiddleware:
    """Refuses admin sign-in attempts for an address and user name that failed too often lately (a password guesser),
    before the password is even checked. Failures are counted by the ``user_login_failed`` signal below, in the
    cache, so every web process shares the count."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    @functools.cached_property
    def login_path(self) -> str:
        # Found once: reverse() on every POST cost as much as a small view.
        return reverse("admin:login")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == self.login_path:
            key = _login_key(client_ip(request), str(request.POST.get("username", "")))
            if (cache.get(key) or 0) >= settings.ADMIN_LOGIN_MAX_FAILURES:
                logger.warning("admin sign-in refused: too many failures", extra={"address": client_ip(request)})
                username = str(request.POST.get("username", ""))
                security_event_at(request, SecurityEvent.Kind.ADMIN_LOGIN_THROTTLED, actor=username)
                response = HttpResponse("Too many failed sign-ins. Try again later.", status=429)
                response["Retry-After"] = str(settings.ADMIN_LOGIN_WINDOW_SECONDS)
                return response
        return self.get_response(request)


@receiver(user_login_failed, dispatch_uid="ops.admin_login_failed")
def count_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is None:
        return
    username = str(credentials.get("username", ""))
    security_event_at(request, SecurityEvent.Kind.ADMIN_LOGIN_FAILED, actor=username)
    key = _login_key(client_ip(request), username)
    if cache.add(key, 1, timeout=settings.ADMIN_LOGIN_WINDOW_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.ADMIN_LOGIN_WINDOW_SECONDS)


@receiver(user_logged_in, dispatch_uid="ops.admin_logged_in")
def forget_login_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None:
        cache.delete(_login_key(client_ip(request), str(user.get_username())))


# The admin's own fields that may look like anything: a password is never stored or logged as typed.
_ADMIN_UNCHECKED_FIELDS = frozenset({"csrfmiddlewaretoken", "password", "password1", "password2", "old_password"})


class AdminCardDataGuardMiddleware:
    """The card-number guard on the console's forms too (the API's is in its JSON parser): a form posted to the
    admin with anything card-like in a field is refused whole, before any view reads it, and nothing is echoed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path.startswith("/admin/"):
            fields = {key: values for key, values in request.POST.lists() if key not in _ADMIN_UNCHECKED_FIELDS}
            field = find_card_number(fields)
            if field is not None:
                logger.warning("admin form refused: card data", extra={"field": field, "path": request.path})
                card_data_refused(request, field)
                return HttpResponseBadRequest(
                    f"Card numbers are not accepted, in any field ({field.split('[')[0]}). Nothing was saved."
                )
        return self.get_response(request)
