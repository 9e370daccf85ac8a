"""The ceiling endpoint's table: the smallest row a useful write stores (a name and an amount)."""

from __future__ import annotations

from django.db import models


class CeilingRow(models.Model):
    name = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.name} {self.amount}"
