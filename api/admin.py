from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from api.models import ApiClient, IdempotencyKey
from api.readonly_admin import EstimatedCountPaginator


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Keys are created with ``manage.py create_api_client``, which shows the key once; here they are only listed."""

    list_display = ["name", "key_prefix", "created_at", "revoked_at"]
    fields = readonly_fields = ("name", "key_prefix", "created_at", "revoked_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "client", "request_path", "response_status", "created_at", "expires_at"]
    list_select_related = ["client"]
    search_fields = ["key__exact"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # a day's keys: as many as the day's payments

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
