from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from wallets.models import Seller


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ["account", "display_name", "created_at"]
    search_fields = ["=account", "display_name"]
    readonly_fields = ["account", "created_at"]

    # Sellers are never deleted: their orders and ledger accounts hang off them (and wallets.services relies on it).
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
