from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from api.readonly_admin import ReadOnlyAdmin
from wallets.models import Seller, Wallet


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ["account", "display_name", "created_at"]
    search_fields = ["=account", "display_name"]
    readonly_fields = ["account", "created_at"]

    # Sellers are never deleted: their orders and ledger accounts hang off them (and wallets.services relies on it).
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    """Read-only: a wallet is the ledger's projection and changes only through postings."""

    list_display = ["seller", "currency", "pending", "available", "reserved", "updated_at"]
    list_filter = ["currency"]
    search_fields = ["=seller__account"]
