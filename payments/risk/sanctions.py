"""Sanctions screening against a local list file (RISK_SANCTIONS_FILE: one name per line, ``#`` comments), exact and
fuzzy. Names are compared normalised (case, accents, punctuation and word order ignored). Fuzzy matching compares a
name only with the listed names that share a word with it, so screening stays fast for a list of any length."""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class SanctionsHit:
    listed: str  # the entry as written in the list
    score: float  # 1.0 for an exact match


def normalise(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(sorted(re.findall(r"[a-z0-9]+", letters)))


@dataclass(frozen=True)
class SanctionsList:
    exact: dict[str, str]  # normalised → as listed
    by_word: dict[str, tuple[str, ...]]  # a word → the normalised entries holding it

    @classmethod
    def from_lines(cls, lines: list[str]) -> SanctionsList:
        exact: dict[str, str] = {}
        by_word: dict[str, list[str]] = {}
        for raw in lines:
            entry = raw.split("#", 1)[0].strip()
            key = normalise(entry)
            if not key:
                continue
            exact[key] = entry
            for word in set(key.split()):
                by_word.setdefault(word, []).append(key)
        return cls(exact, {word: tuple(keys) for word, keys in by_word.items()})

    def screen(self, name: str, *, threshold: float) -> SanctionsHit | None:
        key = normalise(name)
        if not key:
            return None
        if key in self.exact:
            return SanctionsHit(self.exact[key], 1.0)
        candidates = {entry for word in key.split() for entry in self.by_word.get(word, ())}
        best: SanctionsHit | None = None
        for entry in candidates:
            score = difflib.SequenceMatcher(None, key, entry).ratio()
            if score >= threshold and (best is None or score > best.score):
                best = SanctionsHit(self.exact[entry], score)
        return best


def sanctions_list() -> SanctionsList:
    path = Path(settings.RISK_SANCTIONS_FILE)
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    return _load(str(path), stamp)


@functools.lru_cache(maxsize=2)
def _load(path: str, stamp: int) -> SanctionsList:
    # Keyed by the file's modification time: an updated list is read again, an unchanged one never.
    if not stamp:
        return SanctionsList({}, {})
    return SanctionsList.from_lines(Path(path).read_text(encoding="utf-8").splitlines())
