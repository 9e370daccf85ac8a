"""Admin actions that need a few words from the person first (a note, lines): one intermediate page for all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="Why: kept on the record.")


def with_form(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    explanation: str,
    submit: str,
    form_class: type[forms.Form] = NoteForm,
    apply: Callable[[Model, dict[str, Any]], str],
    refusals: tuple[type[Exception], ...] = (),
    secret_results: bool = False,
) -> HttpResponse | None:
    """Show the form for the selected objects; once submitted and valid, ``apply`` each (its return value is the
    message) and go back to the list. A refusal from a service (no permission, four eyes, closed already) is shown
    as an error for that object; the others go on.

    ``secret_results``: the messages hold something shown once (a new API key), so they are answered on a page of
    their own, never cached, instead of through the message store, which would keep them in the session."""
    refused: tuple[type[Exception], ...] = (PermissionDenied, ValueError, *refusals)
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        results: list[tuple[str, str]] = []
        for obj in queryset:
            try:
                results.append((messages.DEFAULT_TAGS[messages.SUCCESS], apply(obj, form.cleaned_data)))
            except refused as exc:  # the service refused: shown, never a 500
                results.append((messages.DEFAULT_TAGS[messages.ERROR], f"{obj}: {exc}"))
        if secret_results:
            context = {**model_admin.admin_site.each_context(request), "title": title, "results": results}
            response = render(request, "admin/action_results.html", context)
            response["Cache-Control"] = "no-store"
            return response
        for tag, text in results:
            model_admin.message_user(request, text, messages.ERROR if tag == "error" else messages.SUCCESS)
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "submit": submit,
        "form": form,
        "queryset": queryset,
        "action": action,
    }
    return render(request, "admin/action_form.html", context)
