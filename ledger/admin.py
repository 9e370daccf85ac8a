"""The ledger in the finance console: everything read-only, for everyone. Corrections are new postings."""

from __future__ import annotations

from django.contrib import admin

from api.readonly_admin import ReadOnlyAdmin, ReadOnlyInline
from ledger.models import Account, Entry, JournalTransaction


class EntryInline(ReadOnlyInline):
    model = Entry
    show_change_link = False
    fields = readonly_fields = ("account", "side", "amount", "currency")


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["code", "type", "currency", "created_at"]
    list_filter = ["type", "currency"]
    search_fields = ["code"]


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnlyAdmin):
    list_display = ["kind", "reference", "effective_at", "actor", "memo"]
    list_filter = ["kind"]
    search_fields = ["=reference"]
    date_hierarchy = "effective_at"
    inlines = [EntryInline]


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["journal", "account", "side", "amount", "currency", "effective_at"]
    list_select_related = ["journal", "account"]
    list_filter = ["side", "currency"]
    raw_id_fields = ["journal", "account"]
