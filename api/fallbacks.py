"""Django's 404 and 500 pages for the API's paths: JSON in the API's error shape, like every other API answer."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from api.errors import error_body


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/v1/"):
        return JsonResponse(
            error_body("internal_error", "Something went wrong on our side; it has been logged."), status=500
        )
    return defaults.server_error(request)
