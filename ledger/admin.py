"""The ledger in the finance console: everything read-only, for everyone. Corrections are new postings."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from api.readonly_admin import IndexedValuesFilter, ReadOnlyAdmin, ReadOnlyInline
from ledger.models import Account, Entry, JournalTransaction
from ledger.selectors import account_balance, trial_balances

# The "as of" moment of the account page being rendered (AccountAdmin.change_view sets it, ``balance`` reads it).
_as_of: ContextVar[datetime | None] = ContextVar("ledger_admin_as_of", default=None)


def as_of_param(request: HttpRequest) -> datetime | None:
    """``?as_of=YYYY-MM-DDTHH:MM`` (UTC); absent or unreadable: now."""
    raw = request.GET.get("as_of", "")
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None
    except ValueError:
        return None


class EntryInline(ReadOnlyInline):
    model = Entry
    show_change_link = False
    fields = readonly_fields = ("account", "side", "amount", "currency")


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["code", "type", "currency", "created_at"]
    list_filter = ["type", "currency"]
    search_fields = ["code"]
    readonly_fields = ["balance", "postings"]

    def get_urls(self) -> list[Any]:
        page = path("trial-balance/", self.admin_site.admin_view(self.trial_balance_view), name="ledger_trial_balance")
        return [page, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The ModelAdmin is one object shared by every request the process serves at once: the moment asked for
        # travels in a context variable, which each request (thread) has its own of, never on ``self``.
        # Rendered here, while the variable holds: a TemplateResponse would otherwise render after this returns.
        token = _as_of.set(as_of_param(request))
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
            return response
        finally:
            _as_of.reset(token)

    @admin.display(description="balance (minor units)")
    def balance(self, account: Account) -> str:
        as_of = _as_of.get()
        moment = f"as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of else "now"
        return format_html(
            "{} {} · <form method='get' style='display:inline'>as of <input type='datetime-local' name='as_of'>"
            " <input type='submit' value='Show'></form>",
            account_balance(code=account.code, as_of=as_of),
            moment,
        )

    @admin.display(description="postings")
    def postings(self, account: Account) -> str:
        return format_html("<a href='../../../entry/?account__code__exact={}'>the account's entries</a>", account.code)

    def trial_balance_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        as_of = as_of_param(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Trial balance",
            "balances": trial_balances(as_of=as_of),
            "as_of": as_of,
            "as_of_input": request.GET.get("as_of", ""),
        }
        return render(request, "admin/ledger/trial_balance.html", context)


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnlyAdmin):
    list_display = ["kind", "reference", "effective_at", "actor", "memo"]
    # The kinds from the (kind, reference) unique index, not a SELECT DISTINCT over millions of postings; and no
    # date_hierarchy, whose links are one more such DISTINCT.
    list_filter = [("kind", IndexedValuesFilter)]
    search_fields = ["reference__exact"]
    inlines = [EntryInline]


class EntryCurrencyFilter(admin.SimpleListFilter):
    """The currencies come from the chart of accounts (an entry's currency is its account's): Django's own filter
    on the field would read every entry (SELECT DISTINCT over millions of rows) to list them."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        currencies = Account.objects.order_by("currency").values_list("currency", flat=True).distinct()
        return [(currency, currency) for currency in currencies]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Entry]) -> QuerySet[Entry]:
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["journal", "account", "side", "amount", "currency", "effective_at"]
    list_select_related = ["journal", "account"]
    list_filter = ["side", EntryCurrencyFilter]
    raw_id_fields = ["journal", "account"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Entry]:
        entries = super().get_queryset(request)
        code = request.GET.get("account__code__exact")
        if code:
            # The account's id as a constant, besides the filter on its code that the list applies: PostgreSQL
            # then estimates this account's entries from its statistics (the PSP clearing account has a million),
            # and walks its index newest first, where a join on the code made it guess a few hundred and sort them
            # all (1.4 s).
            account = Account.objects.filter(code=code).values_list("pk", flat=True).first()
            entries = entries.filter(account_id=account if account is not None else -1)
        return entries

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # Newest first, on an index either way: one account's entries by effective time, which its (account,
        # effective_at) index returns in order (the id that Django adds to make the order total is sorted within
        # equal times only); all entries by id, the order they were posted in. Ordering a PSP clearing account's
        # million entries by id instead read them all.
        if "account__code__exact" in request.GET:
            return ("-effective_at",)
        return ("-pk",)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # One account's entries (the drill-down from an account, a wallet or the trial balance). Not a list
        # filter: listing every account code would read the whole chart on every page.
        return lookup in ("account__code__exact", "journal__id__exact") or super().lookup_allowed(
            lookup, value, request
        )
