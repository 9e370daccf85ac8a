"""Reconciliation in the finance console. Runs are evidence: read-only, written only by the checks themselves."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from api.readonly_admin import ReadOnlyAdmin
from reconciliation.models import LedgerCheckRun
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
