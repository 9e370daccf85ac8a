"""Reconciliation in the finance console. Runs are evidence: read-only, written only by the checks themselves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Abs, Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from api.admin_actions import NoteForm, with_form
from api.readonly_admin import ReadOnlyAdmin
from audit.admin import audit_html
from ledger.errors import LedgerError
from reconciliation.ingest import SettlementFileInvalid
from reconciliation.models import Adjustment, LedgerCheckRun, Mismatch, MismatchStatus, ReconciliationRun
from reconciliation.resolutions import (
    FindingClosed,
    ProposedLine,
    adjustment_approve,
    adjustment_propose,
    adjustment_reject,
    mismatch_resolve,
    mismatch_retry,
    write_off_propose,
)
from reconciliation.runs import reconciliation_run
from reconciliation.selectors import CHECK_TITLES, describe_violation, runs_chart


@admin.register(LedgerCheckRun)
class LedgerCheckRunAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "ok", "violation_count", "actor", "finished_at"]
    list_filter = ["ok"]
    date_hierarchy = "started_at"
    ordering = ["-started_at"]
    # The raw JSON stays out of the page: ``report`` shows the same violations, one readable line each.
    fields = readonly_fields = ("started_at", "finished_at", "ok", "violation_count", "actor", "report")

    @admin.display(description="report")
    def report(self, run: LedgerCheckRun) -> str:
        checks = format_html_join(
            "",
            "<li>{}: {}</li>",
            (
                (title, "OK" if not run.check_counts.get(check) else f"{run.check_counts[check]} violation(s)")
                for check, title in CHECK_TITLES.items()
            ),
        )
        violations = format_html_join(
            "", "<li><code>{}</code> {}</li>", ((v["check"], describe_violation(v)) for v in run.violations)
        )
        stored = len(run.violations)
        missing = run.violation_count - stored
        note = f"{missing} more violation(s) found, not stored" if missing > 0 else ""
        return format_html("<ul>{}</ul><ul>{}</ul>{}", checks, violations, note)


class SettlementUploadForm(forms.Form):
    psp = forms.ChoiceField(choices=[(psp, psp) for psp in settings.RECONCILIATION_PSPS])
    settlement_date = forms.DateField(help_text="YYYY-MM-DD")
    file = forms.FileField(help_text="The PSP's settlement report, CSV.")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "settlement_date",
        "psp",
        "status",
        "attempts",
        "lines_total",
        "lines_malformed",
        "summary",
        "open_findings",
        "finished_at",
    ]
    list_filter = ["psp", "status"]
    date_hierarchy = "settlement_date"
    ordering = ["-settlement_date"]

    @admin.display(description="categories")
    def summary(self, run: ReconciliationRun) -> str:
        return ", ".join(f"{count} {category}" for category, count in sorted(run.counts.items()))

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReconciliationRun]:
        # Counted in the list's own query: one COUNT per row was a query per run shown.
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("mismatches", filter=Q(mismatches__status=MismatchStatus.OPEN)))
        )

    @admin.display(description="open findings")
    def open_findings(self, run: ReconciliationRun) -> str:
        count = getattr(run, "open_count", None)
        if count is None:  # a run not read through the list
            count = run.mismatches.filter(status=MismatchStatus.OPEN).count()
        url = reverse("admin:reconciliation_mismatch_changelist")
        return format_html("<a href='{}?run__id__exact={}'>{}</a>", url, run.pk, count)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "chart": runs_chart()})

    def get_urls(self) -> list[Any]:
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="reconciliation_upload")
        return [upload, *super().get_urls()]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        # Starting a run is an operator's act: the same permission as changing a run would need.
        if not request.user.has_perm("reconciliation.start_run"):
            raise PermissionDenied
        form = SettlementUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                run = reconciliation_run(
                    settlement_date=form.cleaned_data["settlement_date"],
                    psp=form.cleaned_data["psp"],
                    stream=upload.file,
                    file_name=upload.name,
                    actor=f"admin:{request.user.get_username()}",
                )
            except SettlementFileInvalid as exc:
                form.add_error("file", f"Not a settlement report: {exc}")
            else:
                self.message_user(request, f"Reconciled {run}: {self.summary(run)}.", messages.SUCCESS)
                return redirect("admin:reconciliation_reconciliationrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Reconcile an uploaded settlement file",
        }
        return render(request, "admin/reconciliation/upload.html", context)


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    BOUNDS = {"day": (0, 1), "week": (1, 7), "month": (7, 30), "older": (30, None)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("day", "under a day"), ("week", "1-7 days"), ("month", "7-30 days"), ("older", "over 30 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> QuerySet[Mismatch]:
        if self.value() not in self.BOUNDS:
            return queryset
        low, high = self.BOUNDS[str(self.value())]
        now = timezone.now()
        queryset = queryset.filter(created_at__lte=now - timedelta(days=low))
        return queryset if high is None else queryset.filter(created_at__gt=now - timedelta(days=high))


class AmountFilter(admin.SimpleListFilter):
    """By the size of the difference (or of the line, for a finding with no counterpart), in minor units."""

    title = "amount"
    parameter_name = "amount"
    BOUNDS = {"small": (0, 100), "medium": (100, 10_000), "large": (10_000, None)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("small", "under 100 minor units"), ("medium", "100 to 10,000"), ("large", "over 10,000")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> QuerySet[Mismatch]:
        if self.value() not in self.BOUNDS:
            return queryset
        low, high = self.BOUNDS[str(self.value())]
        size = Abs(Coalesce("difference", "psp_amount", "our_amount"))
        queryset = queryset.annotate(size=size).filter(size__gte=low)
        return queryset if high is None else queryset.filter(size__lt=high)


@admin.register(Mismatch)
class MismatchAdmin(ReadOnlyAdmin):
    """The investigation queue: what the nightly runs could not settle by themselves, and what they did."""

    actions = ["resolve", "propose_adjustment", "propose_write_off", "retry"]
    readonly_fields = ["audit_trail"]

    def has_resolve_mismatch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reconciliation.resolve_mismatch")

    @admin.display(description="audit trail")
    def audit_trail(self, mismatch: Mismatch) -> str:
        return audit_html("mismatch", mismatch.pk)

    @admin.action(description="Resolve with a note", permissions=["resolve_mismatch"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> HttpResponse | None:
        return with_form(
            self,
            request,
            queryset.filter(status=MismatchStatus.OPEN),
            action="resolve",
            title="Resolve findings",
            explanation="Closes each finding with your note; nothing is posted.",
            submit="Resolve",
            apply=lambda m, data: f"{mismatch_resolve(mismatch_id=m.pk, user=request.user, note=data['note'])}",
            refusals=REFUSALS,
        )

    @admin.action(description="Propose an adjustment (a second person approves)", permissions=["resolve_mismatch"])
    def propose_adjustment(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> HttpResponse | None:
        return with_form(
            self,
            request,
            queryset.filter(status=MismatchStatus.OPEN),
            action="propose_adjustment",
            title="Propose an adjustment",
            explanation="A balanced posting on existing accounts. It posts once another person approves it.",
            submit="Propose",
            form_class=AdjustmentForm,
            apply=lambda m, data: str(
                adjustment_propose(user=request.user, lines=data["lines"], memo=data["note"], mismatch_id=m.pk)
            ),
            refusals=REFUSALS,
        )

    @admin.action(
        description="Propose a write-off to suspense (a second person approves)", permissions=["resolve_mismatch"]
    )
    def propose_write_off(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> HttpResponse | None:
        return with_form(
            self,
            request,
            queryset.filter(status=MismatchStatus.OPEN),
            action="propose_write_off",
            title="Propose write-offs",
            explanation="Each finding's difference leaves suspense for write-offs once another person approves.",
            submit="Propose",
            apply=lambda m, data: str(write_off_propose(user=request.user, mismatch_id=m.pk, memo=data["note"])),
            refusals=REFUSALS,
        )

    @admin.action(description="Retry the automatic resolution", permissions=["resolve_mismatch"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> None:
        for mismatch in queryset.filter(status=MismatchStatus.OPEN):
            try:
                after = mismatch_retry(mismatch_id=mismatch.pk, user=request.user)
            except (PermissionDenied, *REFUSALS) as exc:
                self.message_user(request, f"{mismatch}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{after}", messages.SUCCESS)

    list_display = [
        "category",
        "status",
        "reference",
        "currency",
        "psp_amount",
        "our_amount",
        "difference",
        "run",
        "created_at",
    ]
    list_filter = ["category", "status", AgeFilter, AmountFilter, "psp", "currency", "auto", "run"]
    list_select_related = ["run"]
    search_fields = ["reference__exact", "natural_key__exact"]
    date_hierarchy = "created_at"


def _lines(text: str) -> list[ProposedLine]:
    lines = []
    for number, raw in enumerate(text.strip().splitlines(), start=1):
        parts = raw.split()
        if len(parts) != 3 or parts[1] not in ("D", "C") or not parts[2].isdigit():
            raise forms.ValidationError(f"line {number}: write 'account D|C amount-in-minor-units'")
        lines.append(ProposedLine(parts[0], parts[1], int(parts[2])))
    if len(lines) < 2:
        raise forms.ValidationError("an adjustment has at least two lines")
    return lines


class AdjustmentForm(NoteForm):
    lines = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="One line per entry: account code, D or C, amount in minor units. E.g. 'suspense:EUR D 250'.",
    )

    def clean_lines(self) -> list[ProposedLine]:
        return _lines(self.cleaned_data["lines"])


REFUSALS = (FindingClosed, LedgerError)


@admin.register(Adjustment)
class AdjustmentAdmin(ReadOnlyAdmin):
    list_display = ["pk", "kind", "status", "mismatch", "memo", "proposed_by", "proposed_at", "decided_by", "journal"]
    list_filter = ["status", "kind"]
    actions = ["approve", "reject"]
    readonly_fields = ["audit_trail"]

    @admin.display(description="audit trail")
    def audit_trail(self, adjustment: Adjustment) -> str:
        return audit_html("adjustment", adjustment.pk)

    def has_approve_adjustment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reconciliation.approve_adjustment")

    @admin.action(description="Approve and post (not your own)", permissions=["approve_adjustment"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Adjustment]) -> HttpResponse | None:
        return with_form(
            self,
            request,
            queryset,
            action="approve",
            title="Approve adjustments",
            explanation="Each posts to the ledger as proposed. You cannot approve one you proposed.",
            submit="Approve and post",
            apply=lambda a, data: f"{adjustment_approve(adjustment_id=a.pk, user=request.user, note=data['note'])}",
            refusals=REFUSALS,
        )

    @admin.action(description="Reject", permissions=["approve_adjustment"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Adjustment]) -> HttpResponse | None:
        return with_form(
            self,
            request,
            queryset,
            action="reject",
            title="Reject adjustments",
            explanation="Nothing is posted; the finding stays open.",
            submit="Reject",
            apply=lambda a, data: f"{adjustment_reject(adjustment_id=a.pk, user=request.user, note=data['note'])}",
            refusals=REFUSALS,
        )
