"""The ceiling endpoint: what Django and PostgreSQL do for the smallest useful write, without DRF.

It runs through the same middleware stack, the same WSGI server and the same database connection settings as the
payments API, so the ratio between the two is what the API's own layers (DRF, authentication, idempotency,
validation, the extra statements) cost.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.models import CeilingRow

# Fits CeilingRow.amount (14 digits, 2 after the point), so a valid body can never overflow the column.
_AMOUNT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")


@csrf_exempt
@require_POST
def ceiling(request: HttpRequest) -> JsonResponse:
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        return JsonResponse({"error": "The body is not valid JSON."}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"error": "The body must be a JSON object."}, status=400)
    name = data.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        return JsonResponse({"error": "name: a string of 1 to 64 characters."}, status=400)
    amount = data.get("amount")
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        return JsonResponse({"error": 'amount: a decimal string such as "12.34".'}, status=400)
    # Autocommit: one INSERT ... RETURNING id, no transaction block around it.
    row = CeilingRow.objects.create(name=name, amount=Decimal(amount))
    return JsonResponse({"id": row.pk}, status=201)


class CeilingInput(serializers.Serializer):
    name = serializers.CharField(min_length=1, max_length=64)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)


class CeilingDrf(APIView):
    """The same write through DRF, with the framework's defaults and no authentication."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        data = CeilingInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = CeilingRow.objects.create(**data.validated_data)
        return Response({"id": row.pk}, status=201)
