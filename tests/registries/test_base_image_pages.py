"""The developer catalog: what each entry shows (allowed tags from the inventory with digest and age, the
pull command by digest for the chosen region, banners, what is built on it), what it costs in queries,
and the Dockerfile box, which answers every input with a verdict or one readable line, never a 500."""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from registries import base_image_pages
from registries.models import Artifact, ArtifactLineage, BaseImage, BaseImageMirror, Repository
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

LIST = reverse("registries:base_images")
CHECK = reverse("registries:base_image_check")
HTMX = {"HX-Request": "true"}


def body(response: Response) -> str:
    return response.content.decode()


def entry(name: str = "", **fields: Any) -> BaseImage:
    return BaseImage.objects.create(name=name or f"docker.io/library/{factories.unique('img')}", **fields)


def mirror(of: BaseImage, region: str) -> Repository:
    """A regional mirror of `of` in a registry of its own, and the inventory repository it syncs into."""
    held = factories.registry(endpoint=f"https://{factories.unique('mirror')}.example.test", region=region)
    name = f"base/{of.name.rsplit('/', 1)[-1]}"
    BaseImageMirror.objects.create(base_image=of, registry=held, repository=name, region=region)
    return factories.repository(held, name=name)


def image(repository: Repository, tag: str, *, days_old: float = 1, **fields: Any) -> Artifact:
    fields.setdefault("created", timezone.now() - timedelta(days=days_old))
    made = factories.artifact(repository, **fields)
    factories.tag(made, name=tag)
    return made


def built_on(base: BaseImage, count: int) -> list[Artifact]:
    repository = factories.repository(factories.registry())
    made = [factories.artifact(repository) for _ in range(count)]
    for artifact in made:
        ArtifactLineage.objects.create(
            artifact=artifact, method="annotation", base_image=base, base_reference=f"{base.name}:x"
        )
    return made


def host(repository: Repository) -> str:
    return repository.registry.endpoint.split("://", 1)[1]


# --- What the list shows -------------------------------------------------------------------------


def test_an_entry_shows_its_description_patterns_team_and_allowed_tags_with_digest_age_and_pull(
    client: Client, developer: User
) -> None:
    team = factories.group(display_name="Platform Python")
    python = entry(
        "docker.io/library/python", tags=["3.12-*"], description="CPython on Debian", owner_group=team
    )
    repository = mirror(python, "eu-west-1")
    slim = image(repository, "3.12-slim", days_old=10)
    image(repository, "3.11-slim")  # outside the patterns: not offered
    client.force_login(developer)

    page = body(client.get(LIST))

    assert "CPython on Debian" in page
    assert "Platform Python" in page
    assert "<code>3.12-*</code>" in page
    assert "3.12-slim" in page
    assert "3.11-slim" not in page
    assert f"docker pull {host(repository)}/base/python@{slim.digest}" in page
    assert "10 days" in page


def test_deprecated_entries_carry_a_banner_linking_the_replacement_and_banned_ones_need_the_filter(
    client: Client, developer: User
) -> None:
    new = entry("docker.io/library/python", tags=["3.13-*"])
    entry(
        "docker.io/library/python2",
        status=BaseImage.Status.DEPRECATED,
        replacement="docker.io/library/python:3.13-slim",
    )
    entry(
        "docker.io/library/ubuntu", status=BaseImage.Status.BANNED, replacement="docker.io/library/debian:12"
    )
    client.force_login(developer)

    default = body(client.get(LIST))
    banned = body(client.get(LIST, {"status": "banned"}))

    assert "Deprecated" in default
    assert reverse("registries:base_image", args=[new.pk]) in default
    assert "docker.io/library/python:3.13-slim" in default
    assert "docker.io/library/ubuntu" not in default
    assert "docker.io/library/ubuntu" in banned
    assert "Banned" in banned
    assert "docker.io/library/python2" not in banned
    assert "<code>docker.io/library/debian:12</code>" in banned  # not in the catalog: shown, not linked


def test_search_matches_names_and_descriptions(client: Client, developer: User) -> None:
    entry("docker.io/library/node", description="JavaScript runtime")
    entry("docker.io/library/golang", description="Go toolchain")
    client.force_login(developer)

    by_name = body(client.get(LIST, {"q": "golang"}))
    by_description = body(client.get(LIST, {"q": "javascript"}))

    assert "docker.io/library/golang" in by_name
    assert "docker.io/library/node" not in by_name
    assert "docker.io/library/node" in by_description
    assert "docker.io/library/golang" not in by_description
    assert "No base image matches." in body(client.get(LIST, {"q": "cobol"}))


def test_an_empty_catalog_says_so(client: Client, developer: User) -> None:
    client.force_login(developer)
    assert "The catalog of approved base images is empty." in body(client.get(LIST))


def test_htmx_gets_the_results_alone(client: Client, developer: User) -> None:
    entry("docker.io/library/node")
    client.force_login(developer)

    page = body(client.get(LIST, {"q": "node"}, headers=HTMX))

    assert page.lstrip().startswith('<div id="base-image-results"')
    assert "<html" not in page


# --- Regions -------------------------------------------------------------------------------------


def test_pulls_go_to_the_chosen_region_which_the_session_remembers(client: Client, developer: User) -> None:
    python = entry("docker.io/library/python", tags=["3.12-*"])
    us, eu = mirror(python, "us-east-1"), mirror(python, "eu-west-1")
    digest = image(us, "3.12-slim").digest
    image(eu, "3.12-slim", digest=digest)
    client.force_login(developer)

    first = body(client.get(LIST))  # no choice yet: the first region, by name
    chosen = body(client.get(LIST, {"region": "us-east-1"}))
    later = body(client.get(LIST))  # remembered
    unknown = body(client.get(LIST, {"region": "mars-1"}))  # not a region: the remembered one stands

    assert f"{host(eu)}/base/python@{digest}" in first
    assert host(us) not in first
    assert f"{host(us)}/base/python@{digest}" in chosen
    assert f"{host(eu)}/base/python@" not in chosen
    assert f"{host(us)}/base/python@{digest}" in later
    assert f"{host(us)}/base/python@{digest}" in unknown
    assert '<option value="eu-west-1">' in later
    assert '<option value="us-east-1" selected>' in later


def test_a_tag_the_chosen_region_lacks_is_pulled_from_where_it_is_and_says_so(
    client: Client, developer: User
) -> None:
    python = entry("docker.io/library/python", tags=["3.12-*"])
    eu = mirror(python, "eu-west-1")
    us = mirror(python, "us-east-1")
    image(us, "3.12-slim")
    newer = image(us, "3.12-bookworm")
    client.force_login(developer)

    page = body(client.get(LIST, {"region": "eu-west-1"}))

    assert f"docker pull {host(us)}/base/python@{newer.digest}" in page
    assert "from us-east-1: not in eu-west-1 yet" in page
    assert f"{host(eu)}/base/python@" not in page


# A Docker Hub registry's endpoint is its API host (README); older records name the registry host.
@pytest.mark.parametrize("endpoint", ["https://hub.docker.com", "https://registry-1.docker.io"])
def test_an_entry_without_mirrors_is_pulled_from_its_own_repository_found_in_the_inventory(
    client: Client, developer: User, endpoint: str
) -> None:
    hub = factories.registry(kind="dockerhub", endpoint=endpoint)
    node = entry("docker.io/acme/node", tags=["20-*"])
    repository = factories.repository(hub, name="acme/node")
    pinned = image(repository, "20-alpine")
    client.force_login(developer)

    page = body(client.get(LIST))

    assert f"docker pull docker.io/acme/node@{pinned.digest}" in page
    assert "upstream: no regional mirror" in page
    assert node.name in page


def test_pinned_digests_restrict_the_tags_shown_and_get_pull_commands_on_the_entry_page(
    client: Client, developer: User
) -> None:
    repository_digest = "sha256:" + "a" * 64
    python = entry("docker.io/library/python", digests=[repository_digest])
    repository = mirror(python, "eu-west-1")
    image(repository, "pinned", digest=repository_digest)
    image(repository, "unpinned")
    client.force_login(developer)

    page = body(client.get(reverse("registries:base_image", args=[python.pk])))

    assert ">pinned<" in page
    assert ">unpinned<" not in page
    assert f"docker pull {host(repository)}/base/python@{repository_digest}" in page


# --- Tags: patterns, age, how many ----------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "3.12-*",
        "3.1?-slim",
        "3.1[23]-slim",
        "3.1[!0]-slim",
        "*",
        "3.12-slim",
        "3.[1]2-*",
        "[",
        "a[b",
        "3.12+x",
    ],
)
def test_the_sql_narrowing_keeps_every_tag_the_glob_matches(
    client: Client, developer: User, pattern: str
) -> None:
    names = ["3.12-slim", "3x12-slim", "3.10-slim", "3.13-slim", "[", "a[b", "3.12+x", "3.12-slim-extra"]
    python = entry("docker.io/library/python", tags=[pattern])
    repository = mirror(python, "eu-west-1")
    for name in names:
        image(repository, name)
    client.force_login(developer)

    page = body(client.get(reverse("registries:base_image", args=[python.pk])))

    shown = {name for name in names if f'<td class="mono">{name}</td>' in page}
    assert shown == {name for name in names if fnmatchcase(name, pattern)}


def test_the_list_shows_the_newest_tags_and_the_entry_page_all_of_them(
    client: Client, developer: User
) -> None:
    python = entry("docker.io/library/python", tags=["3.12-*"])
    repository = mirror(python, "eu-west-1")
    for age in range(1, 8):
        image(repository, f"3.12-r{age}", days_old=age)
    client.force_login(developer)

    listed = body(client.get(LIST))
    detail = body(client.get(reverse("registries:base_image", args=[python.pk])))

    assert [f"3.12-r{age}" in listed for age in range(1, 8)] == [True] * 5 + [False] * 2
    assert "All allowed tags" in listed
    assert all(f"3.12-r{age}" in detail for age in range(1, 8))
    assert detail.index("3.12-r1<") < detail.index("3.12-r7<")  # newest first


def test_age_runs_from_the_build_or_the_push_when_the_build_time_is_the_epoch_and_old_tags_are_flagged(
    client: Client, developer: User
) -> None:
    python = entry("docker.io/library/python", max_age_days=30)
    repository = mirror(python, "eu-west-1")
    epoch = datetime(1970, 1, 1, tzinfo=timezone.get_current_timezone())
    image(repository, "reproducible", created=epoch, pushed_at=timezone.now() - timedelta(days=3, hours=1))
    image(repository, "old-build", days_old=45)
    client.force_login(developer)

    page = body(client.get(reverse("registries:base_image", args=[python.pk])))

    reproducible = page[page.index(">reproducible<") :]
    stale = page[page.index(">old-build<") :]
    assert "3 days" in reproducible[: reproducible.index("</tr>")]
    assert "45 days" in stale[: stale.index("</tr>")]
    assert "over 30 days" in stale[: stale.index("</tr>")]
    assert "over 30 days" not in reproducible[: reproducible.index("</tr>")]


# --- Images built on an entry ----------------------------------------------------------------------


def test_the_count_links_to_the_entry_page_which_lists_them_by_registry_repository_and_digest(
    client: Client, developer: User
) -> None:
    python = entry("docker.io/library/python")
    other = entry("docker.io/library/node")
    mine = built_on(python, 3)
    built_on(other, 1)
    client.force_login(developer)

    listed = body(client.get(LIST))
    detail = body(client.get(reverse("registries:base_image", args=[python.pk])))

    assert f'href="{reverse("registries:base_image", args=[python.pk])}#built-on">3 images</a>' in listed
    assert '#built-on">1 image</a>' in listed
    assert "Images built on it (3)" in detail
    for artifact in mine:
        url = reverse("registries:artifact", args=[artifact.repository_id, artifact.digest])
        assert url in detail
        assert artifact.repository.name in detail
        assert artifact.repository.registry.name in detail


def test_the_images_built_on_an_entry_are_paginated(client: Client, developer: User) -> None:
    python = entry("docker.io/library/python")
    built_on(python, base_image_pages.BUILT_ON_PAGE_SIZE + 3)
    client.force_login(developer)
    url = reverse("registries:base_image", args=[python.pk])

    first = body(client.get(url))
    second = body(client.get(url, {"page": 2}))

    assert first.count("/artifacts/sha256:") == base_image_pages.BUILT_ON_PAGE_SIZE
    assert second.count("/artifacts/sha256:") == 3
    assert f"({base_image_pages.BUILT_ON_PAGE_SIZE + 3} in all)" in first


def test_an_unknown_entry_is_a_404(client: Client, developer: User) -> None:
    client.force_login(developer)
    assert client.get(reverse("registries:base_image", args=[999999])).status_code == 404


# --- Query budgets ---------------------------------------------------------------------------------


def _catalog(entries: int) -> None:
    """Entries with two mirrors, tags in each, a replacement and images built on them."""
    for _ in range(entries):
        made = entry(
            tags=["1.*"], status=BaseImage.Status.DEPRECATED, replacement="docker.io/library/python:3.13"
        )
        for region in ("eu-west-1", "us-east-1"):
            repository = mirror(made, region)
            image(repository, "1.0")
            image(repository, "1.1")
        built_on(made, 2)


def test_the_list_costs_the_same_queries_with_few_and_many_entries(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(developer)
    client.get(LIST, {"region": "eu-west-1"})  # the session holds the region from here on
    _catalog(2)
    # session, user, role, regions, count, page, mirrors, registries, tags, replacements
    with django_assert_num_queries(10):
        client.get(LIST)
    _catalog(15)
    with django_assert_num_queries(10):
        client.get(LIST)


def test_the_entry_page_costs_the_same_queries_with_few_and_many_images_built_on_it(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    python = entry("docker.io/library/python", replacement="docker.io/library/python:3.13")
    for region in ("eu-west-1", "us-east-1"):
        image(mirror(python, region), "3.13-slim")
    url = reverse("registries:base_image", args=[python.pk])
    client.force_login(developer)
    client.get(url, {"region": "eu-west-1"})
    built_on(python, 2)
    # session, user, role, entry, mirrors, regions, registries, tags, replacements, built-on count and
    # page, mirror states, last mirror run
    with django_assert_num_queries(13):
        client.get(url)
    built_on(python, 60)
    with django_assert_num_queries(13):
        client.get(url)


# --- The Dockerfile box ----------------------------------------------------------------------------


@pytest.fixture
def catalog() -> None:
    entry("docker.io/library/python", tags=["3.12-*"])
    entry(
        "docker.io/library/node",
        tags=["18-*"],
        status=BaseImage.Status.DEPRECATED,
        replacement="docker.io/library/node:22-slim",
    )


def test_the_box_judges_each_stage_through_htmx(client: Client, developer: User, catalog: None) -> None:
    client.force_login(developer)
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM node:18-alpine AS assets\n"
        "FROM python:3.12-slim\n"
        "COPY --from=assets /app /app\n"
    )

    response = client.post(CHECK, {"dockerfile": dockerfile, "build_args": ""}, headers=HTMX)
    page = body(response)

    assert response.status_code == 200
    assert "<html" not in page
    assert "Compliant" in page
    assert "1 stage is on a deprecated image" in page
    assert "docker.io/library/node:18-alpine" in page
    assert "node:22-slim" in page
    assert '<span class="sev sev-medium">deprecated</span>' in page
    assert '<span class="sev sev-low">approved</span>' in page
    assert "docker.io/library/python:3.12-slim" in page
    assert "--platform=$BUILDPLATFORM" in page  # shown, not judged


def test_build_args_override_arg_defaults(client: Client, developer: User, catalog: None) -> None:
    client.force_login(developer)
    dockerfile = "ARG BASE=python:3.12-slim\nFROM ${BASE}\n"

    default = body(client.post(CHECK, {"dockerfile": dockerfile}, headers=HTMX))
    overridden = body(
        client.post(CHECK, {"dockerfile": dockerfile, "build_args": "BASE=evil.io/x:1\n"}, headers=HTMX)
    )

    assert "Compliant" in default
    assert "evil.io" not in default
    assert "Not compliant" in overridden
    assert "evil.io/x:1" in overridden
    assert '<span class="sev sev-high">unapproved</span>' in overridden


def test_without_javascript_the_box_answers_with_a_page_keeping_what_was_typed(
    client: Client, developer: User, catalog: None
) -> None:
    client.force_login(developer)
    dockerfile = "FROM python:3.11-slim\n"

    response = client.post(CHECK, {"dockerfile": dockerfile, "build_args": "X=1"})
    page = body(response)

    assert response.status_code == 200
    assert "<html" in page
    assert "Not compliant" in page
    assert "3.11-slim" in page
    assert "FROM python:3.11-slim\n</textarea>" in page
    assert client.get(CHECK).status_code == 200


@pytest.mark.parametrize(
    ("dockerfile", "build_args", "message"),
    [
        ("RUN echo hello\n", "", None),  # not a Dockerfile: the check's own line
        ("", "", "Paste a Dockerfile to check."),
        ("FROM python:3.12-slim\n", "not an assignment", "Line 1: write NAME=VALUE"),
        ("FROM python:3.12-slim\n", "OK=1\n\n9BAD=2", "Line 3: write NAME=VALUE"),
    ],
)
def test_bad_input_gets_one_readable_line_never_a_500(
    client: Client, developer: User, catalog: None, dockerfile: str, build_args: str, message: str | None
) -> None:
    client.force_login(developer)
    data = {"dockerfile": dockerfile, "build_args": build_args}

    plain = client.post(CHECK, data)
    live = client.post(CHECK, data, headers=HTMX)

    assert plain.status_code == 400
    assert live.status_code == 200
    for page in (body(plain), body(live)):
        assert 'class="error" role="alert">✗ ' in page
        assert "Compliant" not in page
        if message:
            assert message in page


def test_an_empty_substitution_is_a_verdict_not_an_error(
    client: Client, developer: User, catalog: None
) -> None:
    client.force_login(developer)
    page = body(client.post(CHECK, {"dockerfile": "ARG BASE\nFROM ${BASE}\n"}, headers=HTMX))
    assert "Not compliant" in page
    assert '<span class="sev sev-high">invalid</span>' in page


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: Client, developer: User) -> None:
    client.force_login(developer)
    huge = "FROM python:3.12-slim\n" + "# padding\n" * 110_000

    plain = client.post(CHECK, {"dockerfile": huge})
    live = client.post(CHECK, {"dockerfile": huge}, headers=HTMX)

    assert plain.status_code == 413
    assert live.status_code == 200
    for page in (body(plain), body(live)):
        assert "over 1 MB" in page
