"""The state machines' shared base."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMFieldMixin


class ConcurrentTransitions(ConcurrentTransitionMixin):
    """django-fsm-2's ConcurrentTransitionMixin (a save moves the row only from the state it was read in), with the
    model's state fields found once per class: the mixin's own ``state_fields`` tests every field of the model, for
    every instance built, so each row read paid for it."""

    @property
    def state_fields(self) -> Iterable[FSMFieldMixin]:
        return _state_fields(type(self))


@functools.cache
def _state_fields(model: type[models.Model]) -> tuple[FSMFieldMixin, ...]:
    return tuple(field for field in model._meta.fields if isinstance(field, FSMFieldMixin))
