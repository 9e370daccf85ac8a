from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from api.admin_actions import NoteForm, with_form
from api.errors import ApiError
from api.models import ApiClient, ApiKey, IdempotencyKey
from api.readonly_admin import EstimatedCountPaginator, ReadOnlyAdmin, ReadOnlyInline
from api.services import api_key_revoke, api_key_rotate
from audit.admin import audit_html


class ApiKeyInline(ReadOnlyInline):
    model = ApiKey
    fk_name = "client"
    fields = readonly_fields = ("prefix", "scopes", "created_at", "expires_at", "revoked_at", "replaced_by")
    ordering = ["-created_at"]
    show_change_link = True


@admin.register(ApiClient)
class ApiClientAdmin(ReadOnlyAdmin):
    """Clients are created with ``manage.py create_api_client``, which shows the first key once; keys are rotated
    and revoked from the key list."""

    list_display = ["name", "created_at", "revoked_at"]
    fields = readonly_fields = ("name", "created_at", "revoked_at", "audit_trail")
    inlines = [ApiKeyInline]

    @admin.display(description="audit trail")
    def audit_trail(self, client: ApiClient) -> str:
        return audit_html("api.apiclient", client.pk)


class RotateForm(NoteForm):
    overlap_hours = forms.IntegerField(
        min_value=0, max_value=24 * 30, initial=24, help_text="How long the old key keeps working beside the new one."
    )


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "client", "scopes", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["client"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix__startswith", "client__name__exact"]
    fields = readonly_fields = ("client", "prefix", "scopes", "created_at", "expires_at", "revoked_at", "replaced_by")
    actions = ["rotate", "revoke"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The permission the actions need; the fields themselves stay read-only (readonly_fields).
        return request.user.has_perm("api.change_apikey")

    @admin.action(description="Rotate: issue a new key, the old one ends after an overlap", permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        actor = f"admin:{request.user.get_username()}"

        def apply(key: Any, data: dict[str, Any]) -> str:
            overlap = timedelta(hours=data["overlap_hours"])
            issued = api_key_rotate(key_id=key.pk, overlap=overlap, actor=actor, reason=data["note"])
            return f"{issued.client.name}: new key {issued.key} (scopes {', '.join(issued.api_key.scopes)})"

        return with_form(
            self,
            request,
            queryset,
            action="rotate",
            title="Rotate API keys",
            explanation="Each key gets a successor with the same scopes; the new keys are shown once on the next page.",
            submit="Rotate",
            form_class=RotateForm,
            apply=apply,
            refusals=(ApiError,),
            secret_results=True,
        )

    @admin.action(description="Revoke now (a leaked key)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        actor = f"admin:{request.user.get_username()}"
        return with_form(
            self,
            request,
            queryset,
            action="revoke",
            title="Revoke API keys",
            explanation="Requests with these keys are refused within seconds, in every web process.",
            submit="Revoke",
            apply=lambda key, data: f"{api_key_revoke(key_id=key.pk, actor=actor, reason=data['note'])} revoked",
        )


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
