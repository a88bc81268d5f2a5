"""Aspect-based sentiment of an utterance: aspect terms, each with a polarity, a score and its evidence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Aspect:
    """One aspect term of an utterance and the sentiment expressed about it."""

    term: str  # the aspect as written, e.g. "battery life"
    polarity: str  # positive | negative | neutral
    score: float  # in [-1, 1]; the sign gives the polarity, 0 = neutral
    start: int  # character span of `term` in the utterance text: text[start:end] == term
    end: int
    evidence: str  # the opinion words that decided the polarity ("" when neutral)
