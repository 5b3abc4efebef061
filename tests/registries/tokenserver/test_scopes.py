from __future__ import annotations

from registries.tokenserver.scopes import Scope, parse_scope, parse_scopes


def test_a_plain_repository_scope() -> None:
    assert parse_scope("repository:team/app:pull,push") == Scope("repository", "team/app", ("pull", "push"))


def test_a_host_with_a_port_stays_in_the_name() -> None:
    assert parse_scope("repository:reg.corp:5000/ns/img:pull") == Scope(
        "repository", "reg.corp:5000/ns/img", ("pull",)
    )


def test_a_resource_class_is_ignored() -> None:
    assert parse_scope("repository(plugin):x:pull") == Scope("repository", "x", ("pull",))


def test_catalog() -> None:
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))


def test_malformed_scopes_are_dropped() -> None:
    assert parse_scope("repository") is None
    assert parse_scope("repository:team/app") is None
    assert parse_scope(":team/app:pull") is None


def test_repeated_and_space_separated_scopes_are_all_read() -> None:
    scopes = parse_scopes(["repository:a/child:pull,push repository:a/base:pull", "registry:catalog:*"])
    assert [str(s) for s in scopes] == [
        "repository:a/child:pull,push",
        "repository:a/base:pull",
        "registry:catalog:*",
    ]


def test_duplicate_actions_collapse_and_empty_ones_vanish() -> None:
    assert parse_scope("repository:a/b:pull,,pull,push") == Scope("repository", "a/b", ("pull", "push"))
