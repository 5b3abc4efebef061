from __future__ import annotations

import pytest

from registries.patterns import InvalidPattern, compile_pattern, is_valid_repository_name

MATCHES = [
    ("payments/api", "payments/api", True),
    ("payments/api", "payments/api2", False),
    ("payments/*", "payments/api", True),
    ("payments/*", "payments/a/b", False),  # one segment only
    ("payments/*", "payments", False),
    ("payments/api-*", "payments/api-v1", True),
    ("payments/api-*", "payments/api", False),
    ("payments/**", "payments/a", True),
    ("payments/**", "payments/a/b/c", True),
    ("payments/**", "payments", False),  # what lies under payments/, not payments itself
    ("payments/**", "paymentsx/a", False),
    ("**/base", "base", True),
    ("**/base", "x/y/base", True),
    ("**/base", "xbase", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("**", "a/b/c", True),
    ("team.x/app", "teamxx/app", False),  # '.' is literal, not a regex wildcard
]


@pytest.mark.parametrize(("pattern", "repository", "expected"), MATCHES)
def test_pattern_language(pattern: str, repository: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(repository) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("Payments/api", "lowercase"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("a/**x", "whole path segment"),
        ("a/b c", "cannot contain"),
        ("a/-b", "not a valid repository name segment"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_invalid_patterns_are_refused_with_a_reason(pattern: str, message: str) -> None:
    with pytest.raises(InvalidPattern, match=message):
        compile_pattern(pattern)


def test_the_literal_prefix_narrows_database_lookups() -> None:
    assert compile_pattern("payments/api-*").literal_prefix == "payments/api-"
    assert compile_pattern("**/base").literal_prefix == ""
    assert compile_pattern("payments/api").is_exact


def test_repository_names_follow_distributions_grammar() -> None:
    assert is_valid_repository_name("team/app.v2_x--y")
    assert not is_valid_repository_name("Team/app")
    assert not is_valid_repository_name("team//app")
