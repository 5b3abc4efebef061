"""A campaign's scope, and whether a rule's or grant's pattern reaches the campaign's."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from registries.patterns import InvalidPattern, compile_pattern
from registries.reviews.base import ACTIONS, Campaign

_ANY_SEGMENTS = "**"  # zero or more whole segments


def patterns_overlap(first: str, second: str) -> bool:
    """Whether some repository name matches both patterns: `**` and `prod/*` do, `team/**` and `prod/**` not.

    A rule on `**` lets its group push to prod/api as surely as a rule on `prod/**` does, so a
    campaign about prod/** must find both, whether or not the inventory holds a matching repository.
    """
    return _segments_overlap(_tokens(first), _tokens(second))


def _tokens(pattern: str) -> tuple[str, ...]:
    segments = compile_pattern(pattern).text.split("/")
    tokens: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**" and index == len(segments) - 1:
            tokens += ["*", _ANY_SEGMENTS]  # a trailing ** is one segment or more (registries/patterns.py)
        else:
            tokens.append(segment)
    return tuple(tokens)


@functools.cache
def _segments_overlap(first: tuple[str, ...], second: tuple[str, ...]) -> bool:
    if not first or not second:
        return all(token == _ANY_SEGMENTS for token in first + second)
    if first[0] == _ANY_SEGMENTS:
        return _segments_overlap(first[1:], second) or _segments_overlap(first, second[1:])
    if second[0] == _ANY_SEGMENTS:
        return _segments_overlap(first, second[1:]) or _segments_overlap(first[1:], second)
    return _segment_overlap(first[0], second[0]) and _segments_overlap(first[1:], second[1:])


@functools.cache
def _segment_overlap(first: str, second: str) -> bool:
    """Whether two segments with `*` wildcards (within the segment) match a common name."""
    if not first or not second:
        return set(first + second) <= {"*"}
    if first[0] == "*":
        return _segment_overlap(first[1:], second) or _segment_overlap(first, second[1:])
    if second[0] == "*":
        return _segment_overlap(first, second[1:]) or _segment_overlap(first[1:], second)
    return first[0] == second[0] and _segment_overlap(first[1:], second[1:])


@dataclass(frozen=True)
class Scope:
    registry_ids: frozenset[int]  # empty: every registry
    pattern: str
    actions: frozenset[str]

    @classmethod
    def of(cls, campaign: Campaign) -> Scope:
        ids = frozenset(campaign.registries.values_list("pk", flat=True))
        return cls(registry_ids=ids, pattern=campaign.pattern, actions=frozenset(campaign.actions))

    def covers(self, registry_id: int | None) -> bool:
        # A rule for every registry (None) reaches the registries in scope too.
        return registry_id is None or not self.registry_ids or registry_id in self.registry_ids

    def reached(self, registry_id: int | None, pattern: str, actions: Iterable[str]) -> list[str]:
        """The actions in scope that a rule or grant gives; none when it gives none in scope."""
        wanted = [action for action in ACTIONS if action in actions and action in self.actions]
        if not wanted or not self.covers(registry_id):
            return []
        try:
            return wanted if patterns_overlap(pattern, self.pattern) else []
        except InvalidPattern:
            return []  # a rule or grant scope saved with a broken pattern grants nothing

    def granting(self) -> Q:
        """Rows (rules, grants) giving any action in scope, as a filter."""
        found = Q(pk__in=[])
        for action in self.actions:
            found |= Q(**{f"can_{action}": True})
        return found
