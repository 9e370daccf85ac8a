"""The operations endpoints: thin, unauthenticated for the probes, and /metrics kept from the public.

Plain Django views, not DRF ones: no API key, no content negotiation, nothing between the probe and the answer.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops.health import readiness
from ops.scrape import exposition


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; it asks nothing of anyone (a liveness probe must not fail because a
    dependency did, or every instance would be restarted at once)."""
    return JsonResponse({"status": "alive"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    failed = [name for name, check in checks.items() if not check.ok]
    body = {
        "status": "not_ready" if failed else "ready",
        "failed": failed,
        "checks": {
            name: {"ok": check.ok, "ms": check.ms, **({"error": check.error} if check.error else {})}
            for name, check in checks.items()
        },
    }
    return JsonResponse(body, status=503 if failed else 200)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse({"error": {"code": "forbidden", "message": "Not for this client."}}, status=403)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def metrics_allowed(request: HttpRequest) -> bool:
    """A bearer token equal to METRICS_TOKEN, or a peer address in METRICS_ALLOWED_IPS. The peer is REMOTE_ADDR,
    never X-Forwarded-For, which anyone can write: behind a proxy, use the token."""
    token = settings.METRICS_TOKEN
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOWED_IPS)
