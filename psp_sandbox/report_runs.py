"""The Reporting API's report runs (``POST /v1/reporting/report_runs``) and the Files holding their results.

A run succeeds at once. Its File stores the report's parameters, not its bytes (psp_sandbox/reports.py streams them
on each download of ``{base}/v1/files/{id}/contents``); its ``size`` is counted at the run by streaming it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from psp_sandbox import config, reports
from psp_sandbox import params as p
from psp_sandbox.errors import InvalidRequest
from psp_sandbox.inputs import CURRENCIES
from psp_sandbox.models import File, ReportRun, stripe_id

FILE_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class RunInput:
    report_type: str
    start: datetime
    end: datetime
    columns: list[str]
    currency: str | None


def run_create_input(params: dict[str, Any]) -> RunInput:
    p.reject_unknown(params, {"report_type", "parameters", "expand"})
    report_type = p.str_param(params, "report_type", required=True) or ""
    if report_type not in reports.REPORT_TYPES:
        raise InvalidRequest(
            f"Invalid report_type: {report_type}. The sandbox has {', '.join(reports.REPORT_TYPES)}.",
            param="report_type",
        )
    raw = p.hash_param(params, "parameters") or {}
    allowed = {"interval_start", "interval_end", "columns", "currency", "timezone"}
    p.reject_unknown({f"parameters[{key}]": value for key, value in raw.items()}, {f"parameters[{k}]" for k in allowed})
    start = _moment(raw, "interval_start")
    end = _moment(raw, "interval_end")
    if end <= start:
        raise InvalidRequest("interval_end must be after interval_start.", param="parameters[interval_end]")
    timezone_name = p.str_param(raw, "timezone")
    if timezone_name not in (None, "UTC", "Etc/UTC"):
        raise InvalidRequest("The sandbox reports in UTC only.", param="parameters[timezone]")
    columns = p.list_param(raw, "columns") or list(reports.COLUMNS)
    for index, column in enumerate(columns):
        if column not in reports.COLUMNS:
            raise InvalidRequest(f"Invalid column: {column}.", param=f"parameters[columns][{index}]")
    currency = (p.str_param(raw, "currency", max_length=3) or "").lower() or None
    if currency is not None and currency not in CURRENCIES:
        raise InvalidRequest(f"Invalid currency: {currency}.", param="parameters[currency]")
    return RunInput(report_type=report_type, start=start, end=end, columns=columns, currency=currency)


def _moment(raw: dict[str, Any], name: str) -> datetime:
    value = p.int_param(raw, name)
    if value is None:
        raise InvalidRequest(f"Missing required param: parameters[{name}].", param=f"parameters[{name}]")
    if not 0 <= value < 2**34:
        raise InvalidRequest(f"Invalid timestamp: parameters[{name}].", param=f"parameters[{name}]")
    return datetime.fromtimestamp(value, UTC)


def run_create(*, data: RunInput) -> ReportRun:
    now = timezone.now()
    spec = reports.spec_for(
        report_type=data.report_type,
        start=data.start,
        end=data.end,
        now=now,
        config=config.current(),
        columns=data.columns,
        currency=data.currency,
    )
    # Both passes read committed rows created before ``now`` only, so they agree with every later download.
    altered = reports.alterations(spec)
    size = sum(len(chunk) for chunk in reports.csv_chunks(spec))
    run_id = stripe_id("frr")
    with transaction.atomic():
        result = File.objects.create(
            id=stripe_id("file"),
            filename=f"{run_id}.csv",
            title=f"FinanceReportRun {run_id}",
            size=size,
            parameters=spec.as_json(),
            created=now,
            expires_at=now + FILE_LIFETIME,
        )
        return ReportRun.objects.create(
            id=run_id,
            report_type=data.report_type,
            parameters={
                "interval_start": int(data.start.timestamp()),
                "interval_end": int(data.end.timestamp()),
                "columns": data.columns,
                **({"currency": data.currency} if data.currency else {}),
                "timezone": "UTC",
            },
            result=result,
            alterations=altered,
            created=now,
            succeeded_at=timezone.now(),
        )
