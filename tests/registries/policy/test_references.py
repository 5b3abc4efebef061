"""Image references normalised as distribution's ParseNormalizedNamed and TagNameOnly do.

Cases are taken from distribution/reference's normalize_test.go and reference_test.go and from the
domain decision table of the base-image doc (A4); expected values are worked out from the rules,
each group names the rule it proves.
"""

from __future__ import annotations

import time

import pytest

from registries.policy.references import (
    InvalidReference,
    Reference,
    on_docker_hub,
    parse,
    registry_host,
    with_default_tag,
)

SHA256 = "sha256:" + "f" * 64
SHA512 = "sha512:" + "f" * 128
DBCC = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


def parts(text: str) -> tuple[str, str, str | None, str | None]:
    reference = parse(text)
    return reference.domain, reference.path, reference.tag, reference.digest


# --- Domain decision table (doc A4) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        # no "/": Docker Hub, official image
        ("ubuntu", "docker.io", "library/ubuntu"),
        ("ubuntu:22.04", "docker.io", "library/ubuntu"),
        # first component without ".", ":" or uppercase and not localhost: a Hub namespace
        ("library/ubuntu", "docker.io", "library/ubuntu"),
        ("myorg/app", "docker.io", "myorg/app"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        # library/ is added only for docker.io with a single component
        ("docker.io/ubuntu", "docker.io", "library/ubuntu"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        # the legacy index host is folded into docker.io
        ("index.docker.io/library/ubuntu", "docker.io", "library/ubuntu"),
        ("index.docker.io/debian", "docker.io", "library/debian"),
        # registry-1.docker.io is not folded by distribution (Customs keeps distribution's answer)
        ("registry-1.docker.io/library/ubuntu", "registry-1.docker.io", "library/ubuntu"),
        # a port makes a different registry: not folded, and no library/ added
        ("docker.io:443/ubuntu", "docker.io:443", "ubuntu"),
        # localhost is a registry when a "/" follows it
        ("localhost/app", "localhost", "app"),
        ("localhost:5000/app", "localhost:5000", "app"),
        # a bare localhost is a Hub name (upstream FIXME)
        ("localhost", "docker.io", "library/localhost"),
        # a dot or a colon makes a registry: names, IPv4, ports, IPv6 in brackets
        ("myreg:5000/app", "myreg:5000", "app"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("10.0.0.1/app", "10.0.0.1", "app"),
        ("[::1]:5000/app", "[::1]:5000", "app"),
        ("[2001:db8::1]/repo", "[2001:db8::1]", "repo"),
        ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux"),
        # uppercase in the first component makes it a registry; hosts keep their case
        ("MyReg/app", "MyReg", "app"),
        ("Foo/bar", "Foo", "bar"),
        ("FOO/bar", "FOO", "bar"),
        ("Docker/docker", "Docker", "docker"),
    ],
)
def test_the_registry_is_decided_as_distribution_decides_it(text: str, domain: str, path: str) -> None:
    reference = parse(text)
    assert (reference.domain, reference.path) == (domain, path)


@pytest.mark.parametrize(
    ("familiar", "full", "ambiguous"),
    [
        ("fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar"),
        ("ubuntu", "docker.io/library/ubuntu", "library/ubuntu"),
        ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", None),
        ("other/library", "docker.io/other/library", None),
        ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", None),
        ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", None),
        ("example.com/private/moonbase", "example.com/private/moonbase", None),
        ("example.com:8000/privatebasee", "example.com:8000/privatebasee", None),
        (
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
        ),
        ("foo", "docker.io/library/foo", "docker.io/foo"),
        ("library/foo/bar", "docker.io/library/foo/bar", None),
        ("store/foo/bar", "docker.io/store/foo/bar", None),
    ],
)
def test_familiar_full_and_ambiguous_spellings_normalise_alike(
    familiar: str, full: str, ambiguous: str | None
) -> None:
    for spelling in (familiar, full, ambiguous):
        if spelling is not None:
            assert str(parse(spelling)) == full
            assert parse(spelling).repository == full


# --- Path components, lowercase and length ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "docker/docker",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",  # 64 chars, not all hex
        "docker-rules/docker",  # a dash inside
        "docker---rules/docker",  # a run of dashes
        "doc/docker",
        "d/docker",  # one-letter components
        "jess/t",
        "dock__er/docker",  # a double underscore
        "ns/a.b_c__d-e--f/g",  # every separator
        "192.168.0.1",  # one component: dots are separators in a Hub name
        # 64 hex characters are an image ID only when alone; with a host they are a name
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    ],
)
def test_valid_path_components(text: str) -> None:
    parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "-docker",  # no leading separator
        "-docker/docker",
        "docker-/docker",  # no trailing separator
        "-docker-/docker",
        "____/____",
        "_docker/_docker",
        "dock..er/docker",  # one period only
        "dock_.er/docker",  # separators do not combine
        "dock-.er/docker",
        "dock___er/docker",  # three underscores
        "docker///docker",  # empty components
        "docker.io/docker///docker",
        "docker/",  # no repository
        "aa/asdf$$^/aa",
        "https://github.com/docker/docker",
        ":justtag",
        "@" + SHA256,
        "",
    ],
)
def test_invalid_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "Ubuntu",
        "Uppercase:tag",
        "docker/Docker",
        "docker.io/docker/Docker",
        "docker.io/Ubuntu",
        "localhost/App",
        "test:5000/Uppercase/lowercase:tag",
        "MyReg/App",
    ],
)
def test_an_uppercase_repository_is_an_error_and_never_lowercased(text: str) -> None:
    with pytest.raises(InvalidReference, match="must be lowercase"):
        parse(text)


def test_a_tag_keeps_its_case() -> None:
    assert parts("lowercase:Uppercase") == ("docker.io", "library/lowercase", "Uppercase", None)


def test_a_bare_64_character_hex_string_is_an_image_id_not_a_name() -> None:
    with pytest.raises(InvalidReference, match="image ID"):
        parse("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a")
    # 63 characters, or not hex, is an ordinary name
    assert parse(DBCC.removeprefix("sha256:")[:63]).path == "library/" + DBCC.removeprefix("sha256:")[:63]


def test_the_path_may_be_255_characters_and_no_more() -> None:
    path = "a/" * 127 + "a"  # 255
    assert parse(f"{path}:tag").path == path
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse("a/" * 128 + "a:tag")  # 257


def test_the_limit_counts_library_for_official_images() -> None:
    name = "a" * 247  # "library/" + 247 = 255
    assert parse(name).path == "library/" + name
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse(name + "a")


def test_the_registry_does_not_count_towards_the_limit() -> None:
    # distribution/reference v0.6 (PR #9) measures the path only.
    host = "registry." + "x" * 60 + ".example.com:5000"
    assert parse(f"{host}/{'a' * 255}").path == "a" * 255


# --- Tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("test.com:tag", "tag"),  # one component: the colon starts a tag, not a port
        ("test.com:5000", "5000"),
        ("foo_bar.com:8080", "8080"),
        ("192.168.1.1:5000", "5000"),
        ("b.gcr.io/test.example.com/my-app:test.example.com", "test.example.com"),
        ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com"),
        ("alpine:_underscore_first", "_underscore_first"),
        ("alpine:" + "t" * 128, "t" * 128),
    ],
)
def test_tags(text: str, tag: str) -> None:
    assert parse(text).tag == tag


@pytest.mark.parametrize(
    "text",
    [
        "alpine:" + "t" * 129,  # over 128
        "alpine:.dot-first",
        "alpine:-dash-first",
        "alpine:caf\u00e9",  # \w is ASCII, as in Go
        "alpine:",
        "alpine:a:b",
        "[2001:db8::1]:tag",  # IPv6 with no path
    ],
)
def test_invalid_tags(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


# --- Digests ------------------------------------------------------------------------------------


def test_a_digest_alone() -> None:
    assert parts(f"redis@{DBCC}") == ("docker.io", "library/redis", None, DBCC)
    assert str(parse(f"dmcgowan/myapp@{DBCC}")) == f"docker.io/dmcgowan/myapp@{DBCC}"


def test_tag_and_digest_are_both_kept() -> None:
    written = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    reference = parse(written)
    assert reference.tag == "latest"
    assert reference.digest == written.split("@")[1]
    assert str(reference) == "docker.io/library/" + written


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        (f"test:5000/repo@{SHA256}", "test:5000", "repo"),
        (f"test:5000/repo:tag@{SHA256}", "test:5000", "repo"),
        (f"[2001:db8::1]:5000/repo:tag@{SHA256}", "[2001:db8::1]:5000", "repo"),
        (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", "xn--7o8h.com", "myimage"),
        ("repo@sha384:" + "a" * 96, "docker.io", "library/repo"),
    ],
)
def test_digests_with_hosts_and_tags(text: str, domain: str, path: str) -> None:
    reference = parse(text)
    assert (reference.domain, reference.path, reference.digest) == (domain, path, text.split("@")[1])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("repo@sha256:" + "f" * 34, "exactly 64"),  # matches the grammar (>= 32 hex), fails sha256
        ("repo@sha256:" + "f" * 63, "exactly 64"),
        ("repo@sha256:" + "f" * 65, "exactly 64"),
        ("repo@sha256:" + "F" * 64, "lowercase"),  # the grammar allows A-F, go-digest does not
        ("repo@sha512:" + "f" * 64, "exactly 128"),
        ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
        ("repo@md5:" + "f" * 32, "unsupported digest algorithm"),
        ("repo@sha256:" + "f" * 31, "not a valid image reference"),  # under 32: not a digest at all
        ("repo@sha256:" + "g" * 64, "not a valid image reference"),
        ("repo@" + "f" * 64, "not a valid image reference"),  # no algorithm
    ],
)
def test_digests_are_checked_as_go_digest_checks_them(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason):
        parse(text)


# --- IPv6 and hosts that are not hosts ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[fc00::1]",
        "[fc00::1]:5000",
        "[2001:db8::1]:5000",
        "fc00::1:5000/debian",  # IPv6 needs brackets
        "[fe80::1%eth0]:5000/debian",  # no zone identifiers
        "[fe80::1%@invalidzone]:5000/repo",
        "[2001:db8:3:4::192.0.2.33]:5000/debian",  # no IPv4-mapped forms
        "-docker.io/docker/docker",
        "localhost:5000:6000/app",
    ],
)
def test_invalid_hosts(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


def test_a_first_component_read_as_a_host_must_be_a_valid_host() -> None:
    # distribution reads "foo_bar.com" as a host (it has a dot), then, finding it invalid, returns
    # a name with no registry at all. Customs refuses rather than guess where it would be pulled from.
    with pytest.raises(InvalidReference, match="'foo_bar.com' is read as a registry host"):
        parse("foo_bar.com/app")
    # With no "/", the same text is an ordinary Hub name with a tag.
    assert parts("foo_bar.com:8080") == ("docker.io", "library/foo_bar.com", "8080", None)


# --- The API: Reference, with_default_tag -------------------------------------------------------


def test_with_default_tag_adds_latest_only_when_neither_tag_nor_digest_is_written() -> None:
    assert str(with_default_tag(parse("alpine"))) == "docker.io/library/alpine:latest"
    assert str(with_default_tag(parse("alpine:3.20"))) == "docker.io/library/alpine:3.20"
    assert str(with_default_tag(parse(f"alpine@{SHA256}"))) == f"docker.io/library/alpine@{SHA256}"
    both = f"alpine:3.20@{SHA256}"
    assert str(with_default_tag(parse(both))) == f"docker.io/library/{both}"


def test_parse_adds_no_default_tag() -> None:
    assert parse("alpine").tag is None
    assert str(parse("alpine")) == "docker.io/library/alpine"


def test_a_reference_renders_as_repository_tag_and_digest() -> None:
    reference = Reference(domain="registry.corp:5000", path="base/ubi", tag="9", digest=SHA256)
    assert reference.repository == "registry.corp:5000/base/ubi"
    assert str(reference) == f"registry.corp:5000/base/ubi:9@{SHA256}"
    assert parse(str(reference)) == reference


def test_invalid_reference_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match="'Ubuntu:22.04': the repository name must be lowercase"):
        parse("Ubuntu:22.04")


def test_pathological_input_fails_fast() -> None:
    started = time.monotonic()
    for text in ("a" * 20000 + "!", "a-" * 10000 + "!", "a." * 10000 + "/b!", ("a" * 50 + ".") * 400 + "/x!"):
        with pytest.raises(InvalidReference):
            parse(text)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("written", "as_hub"),
    [
        ("registry-1.docker.io/centos:7", "docker.io/library/centos:7"),
        ("registry.hub.docker.com/acme/app@sha256:" + "a" * 64, "docker.io/acme/app@sha256:" + "a" * 64),
        ("REGISTRY-1.docker.io/library/debian", "docker.io/library/debian"),
        ("docker.io/library/debian", "docker.io/library/debian"),  # already as docker.io names it
        ("ghcr.io/acme/app:1", "ghcr.io/acme/app:1"),  # not Docker Hub: unchanged
        ("localhost:5000/centos", "localhost:5000/centos"),
    ],
)
def test_docker_hub_under_any_of_its_hosts_is_named_as_docker_io(written: str, as_hub: str) -> None:
    assert str(on_docker_hub(parse(written))) == as_hub


@pytest.mark.parametrize(
    ("host", "compared"),
    [
        ("hub.docker.com", "docker.io"),
        ("Registry-1.Docker.IO", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("Registry.Example.com:5000", "registry.example.com:5000"),
        ("docker.io:443", "docker.io:443"),  # a port makes another registry, as for references
    ],
)
def test_hosts_compare_lowercased_with_docker_hub_as_docker_io(host: str, compared: str) -> None:
    assert registry_host(host) == compared
