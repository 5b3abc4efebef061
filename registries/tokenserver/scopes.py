"""The token request's scope grammar: `type[(class)]:name:action[,action…]`, several per value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """One resource scope, or None when it is not `type:name:actions`."""
    # From the right: the last segment is the actions, the first the type, and the name is what
    # lies between, since a name may carry a registry host with a port (reg.corp:5000/team/app).
    kind, _, rest = text.partition(":")
    name, separator, actions = rest.rpartition(":")
    if not kind or not separator or not name:
        return None
    kind = kind.split("(", 1)[0]  # resource classes, e.g. repository(plugin), are deprecated: ignore
    return Scope(kind, name, tuple(dict.fromkeys(a for a in actions.split(",") if a)))


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope in the request: `scope` may repeat, and each value may hold space-separated scopes."""
    parsed = (parse_scope(text) for value in values for text in value.split())
    return [scope for scope in parsed if scope is not None]
