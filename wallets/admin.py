from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from api.readonly_admin import ReadOnlyAdmin
from wallets.models import Bucket, Seller, Wallet
from wallets.services import wallet_account


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ["account", "display_name", "created_at"]
    search_fields = ["account__exact", "display_name"]
    readonly_fields = ["account", "created_at"]

    # Sellers are never deleted: their orders and ledger accounts hang off them (and wallets.services relies on it).
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    """Read-only: a wallet is the ledger's projection and changes only through postings."""

    list_display = ["seller", "currency", "pending", "available", "reserved", "held", "updated_at"]
    list_filter = ["currency"]
    search_fields = ["seller__exact"]
    readonly_fields = ["postings"]

    @admin.display(description="postings per bucket")
    def postings(self, wallet: Wallet) -> str:
        links = format_html_join(
            " · ",
            "<a href='{}?account__code__exact={}'>{}</a>",
            (
                (
                    reverse("admin:ledger_entry_changelist"),
                    wallet_account(wallet.seller_id, wallet.currency, b).code,
                    b.label,
                )
                for b in Bucket
            ),
        )
        return format_html("{}", links)
