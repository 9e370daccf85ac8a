"""The sandbox PSP's URLconf: Stripe's API v1 paths, and Stripe's 404 for everything else."""

from __future__ import annotations

from django.urls import path, re_path

from psp_sandbox import views
from psp_sandbox.endpoint import unrecognized_url

urlpatterns = [
    path("v1/payment_intents", views.payment_intents, name="psp_sandbox_payment_intents"),
    # Before the retrieve route, which would otherwise take "search" for an id.
    path("v1/payment_intents/search", views.payment_intents_search, name="psp_sandbox_payment_intents_search"),
    path("v1/payment_intents/<str:intent_id>", views.payment_intent, name="psp_sandbox_payment_intent"),
    re_path(r"^", unrecognized_url),
]

handler500 = "psp_sandbox.endpoint.server_error"
