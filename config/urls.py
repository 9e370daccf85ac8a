from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("payments.api.urls")),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the Content-Security-Policy allows no inline script.
    path("v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # /healthz, /readyz, /metrics: at the root, where probes and Prometheus look by default.
    path("", include("ops.urls")),
]

if settings.DEMO_STOREFRONT:
    urlpatterns.append(path("storefront/", include("storefront.urls")))

handler400 = "api.fallbacks.bad_request"
handler404 = "api.fallbacks.not_found"
handler500 = "api.fallbacks.server_error"
