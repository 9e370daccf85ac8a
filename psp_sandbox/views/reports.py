"""Reports: the Reporting API's report runs, the Files holding their results, their CSV contents, and the sandbox's
plain daily settlement report."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from psp_sandbox import config, inputs, objects, report_runs, reports
from psp_sandbox.endpoint import Call, authenticate_request, error_response, stripe_endpoint
from psp_sandbox.errors import InvalidRequest, ResourceMissing, StripeError
from psp_sandbox.models import File, ReportRun


def run_create(call: Call) -> tuple[int, dict[str, Any]]:
    data = report_runs.run_create_input(call.params)
    return 200, objects.report_run_object(report_runs.run_create(data=data), base_url=call.base_url)


def run_retrieve(call: Call, run_id: str) -> tuple[int, dict[str, Any]]:
    inputs.retrieve_input(call.params)
    run = ReportRun.objects.select_related("result").filter(pk=run_id).first()
    if run is None:
        raise ResourceMissing("reporting.report_run", run_id)
    return 200, objects.report_run_object(run, base_url=call.base_url)


def file_retrieve(call: Call, file_id: str) -> tuple[int, dict[str, Any]]:
    inputs.retrieve_input(call.params)
    return 200, objects.file_object(_file(file_id), base_url=call.base_url)


def _file(file_id: str) -> File:
    found = File.objects.filter(pk=file_id).first()
    if found is None:
        raise ResourceMissing("file", file_id)
    return found


@csrf_exempt
def file_contents(request: HttpRequest, file_id: str) -> HttpResponseBase:
    """``GET /v1/files/{id}/contents``: at Stripe on files.stripe.com, here on the sandbox's one address."""
    try:
        authenticate_request(request)
        found = _file(file_id)
    except StripeError as exc:
        return error_response(exc)
    return _csv(reports.ReportSpec.from_json(found.parameters), found.filename)


@csrf_exempt
def settlement_report(request: HttpRequest) -> HttpResponseBase:
    """``GET /v1/sandbox/settlement_report?date=YYYY-MM-DD[&currency=eur]``: the payout reconciliation report of one
    UTC day (the transactions whose funds became available that day), with the report faults now configured.
    ``…/settlement_report/alterations?date=`` lists what those faults changed, as JSON."""
    try:
        authenticate_request(request)
        spec = _day_spec(request)
    except StripeError as exc:
        return error_response(exc)
    if request.path.endswith("/alterations"):
        body = {"object": "list", "data": reports.alterations(spec), "has_more": False, "url": request.path}
        return HttpResponse(json.dumps(body, indent=2), content_type="application/json")
    return _csv(spec, f"settlement_{spec.start.date().isoformat()}.csv")


def _day_spec(request: HttpRequest) -> reports.ReportSpec:
    raw = request.GET.get("date", "")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid date: {raw!r}; YYYY-MM-DD.", param="date") from None
    currency = request.GET.get("currency", "").lower() or None
    if currency is not None and currency not in inputs.CURRENCIES:
        raise InvalidRequest(f"Invalid currency: {currency}.", param="currency")
    start, end = reports.day_bounds(day)
    return reports.spec_for(
        report_type=reports.PAYOUT_RECONCILIATION,
        start=start,
        end=end,
        # Everything committed by now; a day still in the future may grow.
        now=timezone.now() + timedelta(microseconds=1),
        config=config.current(),
        currency=currency,
    )


def _csv(spec: reports.ReportSpec, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(reports.csv_chunks(spec), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


runs = stripe_endpoint({"POST": run_create})
run = stripe_endpoint({"GET": run_retrieve})
file = stripe_endpoint({"GET": file_retrieve})
