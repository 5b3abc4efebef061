"""Repository patterns in access rules: exact names, `*` within one path segment, `**` across segments.

    payments/api        exactly that repository
    payments/*          every repository directly under payments/ (not payments/a/b)
    payments/api-*      payments/api-v1, payments/api-gateway, …
    payments/**         everything under payments/, at any depth
    **/base             every repository whose last segment is base

Names follow distribution's grammar (lowercase letters and digits joined by '.', '_', '__' or '-',
segments joined by '/'), so a pattern that could never match a real repository is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_SEGMENT_WITH_STARS = re.compile(r"^[a-z0-9._*-]+$")
MAX_LENGTH = 255


class InvalidPattern(ValueError):
    """A pattern that is not valid; the message says why, for the person who wrote it."""


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    literal_prefix: str  # the part before the first wildcard: lets the database narrow candidates

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None

    @property
    def anchored(self) -> str:
        """The regex anchored at both ends, in the subset PostgreSQL and SQLite read alike."""
        return f"^{self.regex.pattern}$"

    @property
    def is_exact(self) -> bool:
        return "*" not in self.text


@lru_cache(maxsize=65_536)
def compile_pattern(text: str) -> Pattern:
    """Validate and compile a pattern. Cached: the same rules are matched again and again."""
    text = text.strip()
    _validate(text)
    segments = text.split("/")
    regex = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**" and not last:
            regex += "(?:[^/]+/)*"  # zero or more whole segments: "a/**/b" matches a/b and a/x/y/b
            continue
        if segment == "**":
            regex += "[^/]+(?:/[^/]+)*"  # one or more segments: "a/**" is what lies under a/
        else:
            regex += re.escape(segment).replace(r"\*", "[^/]*")
        regex += "" if last else "/"
    prefix = text.split("*", 1)[0]
    return Pattern(text=text, regex=re.compile(regex), literal_prefix=prefix)


def _validate(text: str) -> None:
    if not text:
        raise InvalidPattern("the pattern is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidPattern(f"the pattern is longer than {MAX_LENGTH} characters")
    if text != text.lower():
        raise InvalidPattern("repository names are lowercase; write the pattern in lowercase")
    for segment in text.split("/"):
        _validate_segment(segment, text)


def _validate_segment(segment: str, text: str) -> None:
    if not segment:
        raise InvalidPattern(f"{text!r} has an empty path segment (a leading, trailing or doubled '/')")
    if segment == "**":
        return
    if "**" in segment:
        raise InvalidPattern(f"'**' must be a whole path segment, as in team/** — not {segment!r}")
    if not _SEGMENT_WITH_STARS.match(segment):
        raise InvalidPattern(f"{segment!r} has characters repository names cannot contain")
    if "*" not in segment and not re.fullmatch(_COMPONENT, segment):
        raise InvalidPattern(f"{segment!r} is not a valid repository name segment")


def is_valid_repository_name(name: str) -> bool:
    return bool(re.fullmatch(f"{_COMPONENT}(?:/{_COMPONENT})*", name)) and len(name) <= MAX_LENGTH
