"""The ledger in the finance console: everything read-only, for everyone. Corrections are new postings."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ledger.models import Account, Entry, JournalTransaction


class ReadOnly(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EntryInline(admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    fields = readonly_fields = ("account", "side", "amount", "currency")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnly):
    list_display = ["code", "type", "currency", "created_at"]
    list_filter = ["type", "currency"]
    search_fields = ["code"]


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnly):
    list_display = ["kind", "reference", "effective_at", "actor", "memo"]
    list_filter = ["kind"]
    search_fields = ["=reference"]
    date_hierarchy = "effective_at"
    inlines = [EntryInline]


@admin.register(Entry)
class EntryAdmin(ReadOnly):
    list_display = ["journal", "account", "side", "amount", "currency", "effective_at"]
    list_select_related = ["journal", "account"]
    list_filter = ["side", "currency"]
    raw_id_fields = ["journal", "account"]
