"""The project's URLs plus the benchmark's ceiling endpoint."""

from __future__ import annotations

from django.urls import include, path

from bench import views

urlpatterns = [
    path("bench/ceiling", views.ceiling, name="bench-ceiling"),
    path("bench/ceiling-drf", views.CeilingDrf.as_view(), name="bench-ceiling-drf"),
    path("", include("config.urls")),
]
