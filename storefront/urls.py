from __future__ import annotations

from django.urls import path

from storefront import views

app_name = "storefront"

urlpatterns = [
    path("", views.cart, name="cart"),
    path("pay/hosted", views.pay_on_hosted_page, name="pay-hosted"),
    path("pay/saved", views.pay_with_saved_card, name="pay-saved"),
    path("payments/<str:payment_id>/", views.payment_page, name="payment"),
    path("payments/<str:payment_id>/status", views.payment_status, name="payment-status"),
    path("payments/<str:payment_id>/cancel", views.payment_cancel, name="payment-cancel"),
]
