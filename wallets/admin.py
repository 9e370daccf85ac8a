from __future__ import annotations

from django.contrib import admin

from wallets.models import Seller


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ["account", "display_name", "created_at"]
    search_fields = ["=account", "display_name"]
    readonly_fields = ["account", "created_at"]
