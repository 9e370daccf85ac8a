"""Reconciliation in the finance console. Runs are evidence: read-only, written only by the checks themselves."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.html import format_html, format_html_join

from api.readonly_admin import ReadOnlyAdmin
from reconciliation.ingest import SettlementFileInvalid
from reconciliation.models import LedgerCheckRun, Mismatch, MismatchStatus, ReconciliationRun
from reconciliation.runs import reconciliation_run
from reconciliation.selectors import CHECK_TITLES, describe_violation


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

    @admin.display(description="open findings")
    def open_findings(self, run: ReconciliationRun) -> int:
        return run.mismatches.filter(status=MismatchStatus.OPEN).count()

    def get_urls(self) -> list[Any]:
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="reconciliation_upload")
        return [upload, *super().get_urls()]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        # Starting a run is an operator's act: the same permission as changing a run would need.
        if not request.user.has_perm("reconciliation.add_reconciliationrun"):
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
        context = {**self.admin_site.each_context(request), "form": form, "title": "Reconcile a settlement file"}
        return render(request, "admin/reconciliation/upload.html", context)


@admin.register(Mismatch)
class MismatchAdmin(ReadOnlyAdmin):
    """The investigation queue: what the nightly runs could not settle by themselves, and what they did."""

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
    list_filter = ["category", "status", "psp", "currency", "auto", "run"]
    list_select_related = ["run"]
    search_fields = ["=reference", "=natural_key"]
    date_hierarchy = "created_at"
