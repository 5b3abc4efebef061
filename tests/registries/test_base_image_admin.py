"""Keeping the base-image catalog: the admins' pages and /api/v1/base-images/, who may use them, the
checks they share with the catalog file, and the audit trail they leave."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml
from django.test import Client
from django.urls import NoReverseMatch, reverse
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal.models import AuditEvent
from registries.models import BaseImage, BaseImageMirror
from registries.policy import catalog_io
from registries.policy.catalog_io import EntrySpec, MirrorSpec
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

MANAGE = reverse("registries:base_image_manage")
ADD = reverse("registries:base_image_add")
EXPORT = reverse("registries:base_image_export")
API = reverse("api:base-image-list")
DIGEST = "sha256:" + "a" * 64


def entry(name: str = "docker.io/library/python", **fields: Any) -> BaseImage:
    return catalog_io.save_base_image(None, EntrySpec(name=name, **fields), actor=None)


def edit_url(made: BaseImage) -> str:
    return reverse("registries:base_image_edit", args=[made.pk])


def api_detail(made: BaseImage) -> str:
    return reverse("api:base-image-detail", args=[made.pk])


def body(response: Response) -> str:
    return response.content.decode()


def form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "docker.io/library/python",
        "status": "approved",
        "tags": "3.12-*\n3.13-*",
        "digests": "",
        "replacement": "",
        "max_age_days": "180",
        "description": "CPython",
        "notes": "",
        "owner_group": "",
    } | fields


def audit_of(made: BaseImage | int, action: str) -> list[AuditEvent]:
    pk = made if isinstance(made, int) else made.pk
    events = AuditEvent.objects.filter(action=action, target_type="registries.baseimage", target_id=str(pk))
    return list(events.order_by("sequence"))


# --- The list page --------------------------------------------------------------------------------


def test_admins_see_every_entry_with_its_status_and_mirrors(client: Client, admin: User) -> None:
    registry = factories.registry(name="cache-eu")
    entry(tags=("3.12-*",), mirrors=(MirrorSpec(registry, "base/python", "westeurope"),))
    entry("docker.io/library/node", status="banned", replacement="docker.io/library/node:22")
    client.force_login(admin)

    page = body(client.get(MANAGE))

    assert "docker.io/library/python" in page
    assert "3.12-*" in page
    assert "docker.io/library/node" in page  # banned entries are listed for their keepers
    assert 'use <span class="mono">docker.io/library/node:22</span>' in page


def test_the_list_filters_by_status_and_name(client: Client, admin: User) -> None:
    entry()
    entry("docker.io/library/node", status="deprecated")
    entry("ghcr.io/acme/base", description="The node-free base")
    client.force_login(admin)

    deprecated = body(client.get(MANAGE, {"status": "deprecated"}))
    searched = body(client.get(MANAGE, {"search": "pyth"}))

    assert "docker.io/library/node" in deprecated
    assert "docker.io/library/python" not in deprecated
    assert "docker.io/library/python" in searched
    assert "docker.io/library/node" not in searched


@pytest.mark.parametrize("who", ["reviewer", "developer"])
def test_only_admins_keep_the_catalog(client: Client, cast: dict[str, User | None], who: str) -> None:
    made = entry()
    client.force_login(cast[who])  # type: ignore[arg-type]

    assert client.get(MANAGE).status_code == 403
    assert client.get(edit_url(made)).status_code == 403
    assert client.post(ADD, form(name="docker.io/library/node")).status_code == 403
    assert client.post(reverse("registries:base_image_delete", args=[made.pk])).status_code == 403
    assert client.get(EXPORT).status_code == 403
    assert list(BaseImage.objects.values_list("name", flat=True)) == ["docker.io/library/python"]


def test_signed_out_people_are_sent_to_sign_in(client: Client) -> None:
    assert client.get(MANAGE).status_code == 302


def test_the_list_costs_the_same_queries_with_few_and_many_entries(
    client: Client, admin: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(admin)
    team, registry = factories.group(), factories.registry()
    for n in range(2):
        entry(f"docker.io/acme/base{n}", owner_group=team, mirrors=(MirrorSpec(registry, f"b/{n}"),))
    # session, user, role (menu), count, page (with owner, author and mirror count)
    with django_assert_num_queries(5):
        client.get(MANAGE)
    for n in range(2, 30):
        entry(f"docker.io/acme/base{n}", owner_group=team, mirrors=(MirrorSpec(registry, f"b/{n}"),))
    with django_assert_num_queries(5):
        client.get(MANAGE)


# --- Adding, editing and removing -----------------------------------------------------------------


def test_an_admin_adds_an_entry_and_it_is_audited(client: Client, admin: User) -> None:
    team = factories.group()
    client.force_login(admin)

    response = client.post(ADD, form(owner_group=team.pk, digests=DIGEST))

    made = BaseImage.objects.get()
    assert response.status_code == 302
    assert response["Location"] == edit_url(made)
    assert (made.tags, made.digests, made.max_age_days) == (["3.12-*", "3.13-*"], [DIGEST], 180)
    assert (made.owner_group, made.updated_by) == (team, admin)
    [event] = audit_of(made, "base_image.create")
    assert event.actor_id == admin.pk
    assert event.detail["after"]["owner"] == team.external_id


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "python"}, "name", "docker.io/library/python"),
        ({"name": "docker.io/library/python:3.12"}, "name", "has a tag or digest"),
        ({"tags": "3.12-*, 3.1[3"}, "tags", "tag pattern &#x27;3.1[3&#x27;"),
        ({"tags": "a a"}, "tags", "listed twice"),
        ({"digests": "sha256:abc"}, "digests", "is not a digest"),
        ({"replacement": "python:3.13"}, "replacement", "docker.io/library/python:3.13"),
        ({"max_age_days": "0"}, "max_age_days", "greater than or equal to 1"),
    ],
)
def test_the_form_explains_what_is_wrong(
    client: Client, admin: User, fields: dict[str, str], field: str, message: str
) -> None:
    client.force_login(admin)

    response = client.post(ADD, form(**fields))

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert message in body(response)
    assert not BaseImage.objects.exists()


def test_a_name_already_in_the_catalog_is_a_form_error(client: Client, admin: User) -> None:
    entry()
    client.force_login(admin)

    response = client.post(ADD, form())

    assert response.context["form"].errors["name"] == ["docker.io/library/python is already in the catalog"]
    assert BaseImage.objects.count() == 1


def test_editing_keeps_the_mirrors_and_extra_keys_and_audits_the_change(client: Client, admin: User) -> None:
    registry = factories.registry(name="cache-eu")
    made = entry(tags=("3.12-*",), mirrors=(MirrorSpec(registry, "base/python"),), extra={"ticket": "PLAT-1"})
    client.force_login(admin)
    page = body(client.get(edit_url(made)))
    assert "ticket: PLAT-1" in page  # shown, kept, not editable here

    response = client.post(
        edit_url(made), form(status="deprecated", replacement="docker.io/library/python:3.13")
    )

    assert response.status_code == 302
    made.refresh_from_db()
    assert (made.status, made.replacement, made.extra) == (
        "deprecated",
        "docker.io/library/python:3.13",
        {"ticket": "PLAT-1"},
    )
    assert made.mirrors.get().repository == "base/python"
    [event] = audit_of(made, "base_image.update")
    assert (event.detail["before"]["status"], event.detail["after"]["status"]) == ("approved", "deprecated")
    assert event.detail["after"]["mirrors"] == [{"registry": "cache-eu", "repository": "base/python"}]


def test_an_admin_removes_an_entry(client: Client, admin: User) -> None:
    made = entry(extra={"ticket": "PLAT-1"})
    client.force_login(admin)

    response = client.post(reverse("registries:base_image_delete", args=[made.pk]))

    assert response.status_code == 302
    assert not BaseImage.objects.exists()
    [event] = audit_of(made.pk, "base_image.delete")
    assert event.detail["before"]["ticket"] == "PLAT-1"
    assert event.actor_id == admin.pk


def test_removing_takes_a_post(client: Client, admin: User) -> None:
    made = entry()
    client.force_login(admin)

    assert client.get(reverse("registries:base_image_delete", args=[made.pk])).status_code == 405
    assert BaseImage.objects.exists()


def test_an_unknown_entry_is_not_found(client: Client, admin: User) -> None:
    client.force_login(admin)

    assert client.get(reverse("registries:base_image_edit", args=[999_999])).status_code == 404


# --- Mirrors --------------------------------------------------------------------------------------


def mirror_add(made: BaseImage) -> str:
    return reverse("registries:base_image_mirror_add", args=[made.pk])


def test_an_admin_adds_and_removes_a_mirror(client: Client, admin: User) -> None:
    registry = factories.registry(name="cache-eu")
    made = entry()
    client.force_login(admin)

    added = client.post(
        mirror_add(made), {"registry": registry.pk, "repository": "base/python", "region": "westeurope"}
    )

    assert added.status_code == 302
    mirror = BaseImageMirror.objects.get(base_image=made)
    assert (mirror.registry, mirror.repository, mirror.region) == (registry, "base/python", "westeurope")
    assert "westeurope" in body(client.get(edit_url(made)))

    removed = client.post(reverse("registries:base_image_mirror_delete", args=[made.pk, mirror.pk]))

    assert removed.status_code == 302
    assert not BaseImageMirror.objects.exists()
    events = audit_of(made, "base_image.update")
    assert [len(e.detail["after"].get("mirrors", [])) for e in events] == [1, 0]


@pytest.mark.parametrize(
    ("repository", "field", "message"),
    [("Base/Python", "repository", "is not a repository path"), ("base/taken", None, "already mirrors")],
)
def test_a_wrong_mirror_is_a_form_error(
    client: Client, admin: User, repository: str, field: str | None, message: str
) -> None:
    registry = factories.registry()
    entry("docker.io/library/node", mirrors=(MirrorSpec(registry, "base/taken"),))
    made = entry()
    client.force_login(admin)

    response = client.post(mirror_add(made), {"registry": registry.pk, "repository": repository})

    assert response.status_code == 200
    errors = response.context["mirror_form"].errors
    assert message in " ".join(
        errors[field or "mirrors"] if (field or "mirrors") in errors else errors["__all__"]
    )
    assert not made.mirrors.exists()


def test_a_second_mirror_in_the_same_registry_is_refused(client: Client, admin: User) -> None:
    registry = factories.registry()
    made = entry(mirrors=(MirrorSpec(registry, "base/python"),))
    client.force_login(admin)

    response = client.post(mirror_add(made), {"registry": registry.pk, "repository": "other/python"})

    assert "already has a mirror there" in body(response)
    assert made.mirrors.get().repository == "base/python"


# --- Download -------------------------------------------------------------------------------------


def test_the_catalog_downloads_as_the_file_import_reads(client: Client, admin: User) -> None:
    entry(tags=("3.12-*",), extra={"ticket": "PLAT-1"})
    client.force_login(admin)

    response = client.get(EXPORT)

    assert response["Content-Type"].startswith("application/yaml")
    assert 'filename="base-images.yaml"' in response["Content-Disposition"]
    assert yaml.safe_load(response.content) == {
        "base_images": [
            {"name": "docker.io/library/python", "tags": ["3.12-*"], "status": "approved", "ticket": "PLAT-1"}
        ]
    }
    assert catalog_io.import_catalog(body(response), actor=None).unchanged == ["docker.io/library/python"]


# --- /api/v1/base-images/ -------------------------------------------------------------------------


def test_everyone_signed_in_reads_the_catalog_with_its_mirrors(client: Client, developer: User) -> None:
    registry = factories.registry(name="cache-eu")
    team = factories.group(display_name="Python team")
    made = entry(
        tags=("3.12-*",),
        digests=(DIGEST,),
        owner_group=team,
        mirrors=(MirrorSpec(registry, "base/python", "westeurope"),),
        extra={"ticket": "PLAT-1"},
    )
    client.force_login(developer)

    [listed] = client.get(API).json()["results"]

    assert listed | {"created_at": None, "updated_at": None} == {
        "id": made.pk,
        "name": "docker.io/library/python",
        "status": "approved",
        "tags": ["3.12-*"],
        "digests": [DIGEST],
        "replacement": "",
        "max_age_days": None,
        "description": "",
        "notes": "",
        "owner_group": team.pk,
        "owner_group_name": "Python team",
        "owner_group_external_id": team.external_id,
        "mirrors": [
            {
                "id": made.mirrors.get().pk,
                "registry": registry.pk,
                "registry_name": "cache-eu",
                "repository": "base/python",
                "region": "westeurope",
            }
        ],
        "extra": {"ticket": "PLAT-1"},
        "created_at": None,
        "updated_at": None,
        "updated_by": None,
    }
    assert client.get(api_detail(made)).json()["name"] == "docker.io/library/python"


def test_the_api_filters_by_status_and_searches_names(client: Client, developer: User) -> None:
    entry()
    entry("docker.io/library/node", status="banned")
    client.force_login(developer)

    banned = client.get(API, {"status": "banned"}).json()["results"]
    searched = client.get(API, {"search": "pyth"}).json()["results"]

    assert [e["name"] for e in banned] == ["docker.io/library/node"]
    assert [e["name"] for e in searched] == ["docker.io/library/python"]
    assert client.get(API, {"status": "allowed"}).status_code == 400


def test_signed_out_callers_get_401(client: Client) -> None:
    assert client.get(API).status_code == 401


def test_the_api_list_costs_the_same_queries_with_few_and_many_entries(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(developer)
    registry, team = factories.registry(), factories.group()
    for n in range(2):
        entry(f"docker.io/acme/base{n}", owner_group=team, mirrors=(MirrorSpec(registry, f"b/{n}"),))
    # session, user, role, count, page (with owner and author), mirrors (with their registries)
    with django_assert_num_queries(6):
        client.get(API)
    for n in range(2, 30):
        entry(f"docker.io/acme/base{n}", owner_group=team, mirrors=(MirrorSpec(registry, f"b/{n}"),))
    with django_assert_num_queries(6):
        client.get(API)


def test_an_admin_creates_an_entry_with_mirrors_over_the_api(client: Client, admin: User) -> None:
    registry = factories.registry(name="cache-eu")
    client.force_login(admin)

    response = client.post(
        API,
        {
            "name": "docker.io/library/python",
            "tags": ["3.12-*"],
            "max_age_days": 90,
            "mirrors": [{"registry": registry.pk, "repository": "base/python", "region": "westeurope"}],
            "extra": {"ticket": "PLAT-9"},
        },
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    made = BaseImage.objects.get()
    assert response.json()["mirrors"][0]["registry_name"] == "cache-eu"
    assert (made.tags, made.max_age_days, made.extra, made.updated_by) == (
        ["3.12-*"],
        90,
        {"ticket": "PLAT-9"},
        admin,
    )
    [event] = audit_of(made, "base_image.create")
    assert event.actor_id == admin.pk


@pytest.mark.parametrize(
    ("sent", "field", "message"),
    [
        ({"name": "python"}, "name", "write the normalised repository 'docker.io/library/python'"),
        ({"tags": ["3.1[2"]}, "tags", "tag pattern '3.1[2'"),
        ({"digests": ["sha256:abc"]}, "digests", "is not a digest"),
        ({"replacement": "node"}, "replacement", "docker.io/library/node"),
        ({"extra": {"tags": ["x"]}}, "extra", "'tags' is a catalog key"),
        ({"mirrors": [{"registry": 0, "repository": "a"}]}, "mirrors", "object does not exist"),
    ],
)
def test_the_api_refuses_what_the_file_refuses(
    client: Client, admin: User, sent: dict[str, Any], field: str, message: str
) -> None:
    client.force_login(admin)

    response = client.post(API, {"name": "docker.io/library/python"} | sent, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"]
    assert message in str(error["fields"][field])
    assert not BaseImage.objects.exists()


def test_refusals_from_the_catalog_are_400s_in_the_usual_shape(client: Client, admin: User) -> None:
    registry = factories.registry(name="cache-eu")
    entry("docker.io/library/node", mirrors=(MirrorSpec(registry, "base/x"),))
    client.force_login(admin)

    taken = client.post(
        API,
        {"name": "docker.io/library/python", "mirrors": [{"registry": registry.pk, "repository": "base/x"}]},
        content_type="application/json",
    )
    twice = client.post(API, {"name": "docker.io/library/node"}, content_type="application/json")

    assert taken.status_code == twice.status_code == 400
    assert (
        taken.json()["error"]["message"] == "mirrors: cache-eu/base/x already mirrors docker.io/library/node"
    )
    assert twice.json()["error"]["message"] == "name: docker.io/library/node is already in the catalog"


def test_patch_changes_only_what_it_names(client: Client, admin: User) -> None:
    registry = factories.registry()
    made = entry(tags=("3.12-*",), mirrors=(MirrorSpec(registry, "base/python"),), extra={"ticket": "T"})
    client.force_login(admin)

    response = client.patch(api_detail(made), {"status": "deprecated"}, content_type="application/json")

    assert response.status_code == 200, response.json()
    made.refresh_from_db()
    assert (made.status, made.tags, made.extra) == ("deprecated", ["3.12-*"], {"ticket": "T"})
    assert made.mirrors.count() == 1
    [event] = audit_of(made, "base_image.update")
    assert event.detail["before"]["status"] == "approved"


def test_put_sets_the_whole_entry_like_a_catalog_file_does(client: Client, admin: User) -> None:
    registry = factories.registry()
    made = entry(tags=("3.12-*",), mirrors=(MirrorSpec(registry, "base/python"),), extra={"ticket": "T"})
    client.force_login(admin)

    response = client.put(
        api_detail(made), {"name": made.name, "status": "banned"}, content_type="application/json"
    )

    assert response.status_code == 200, response.json()
    made.refresh_from_db()
    assert (made.status, made.tags, made.extra) == ("banned", [], {})
    assert not made.mirrors.exists()


def test_an_admin_deletes_over_the_api(client: Client, admin: User) -> None:
    made = entry()
    client.force_login(admin)

    assert client.delete(api_detail(made)).status_code == 204
    assert not BaseImage.objects.exists()
    assert audit_of(made.pk, "base_image.delete")


@pytest.mark.parametrize("who", ["reviewer", "developer"])
def test_only_admins_write_over_the_api(client: Client, cast: dict[str, User | None], who: str) -> None:
    made = entry()
    client.force_login(cast[who])  # type: ignore[arg-type]

    created = client.post(API, {"name": "docker.io/library/node"}, content_type="application/json")
    patched = client.patch(api_detail(made), {"status": "banned"}, content_type="application/json")
    deleted = client.delete(api_detail(made))

    assert (created.status_code, patched.status_code, deleted.status_code) == (403, 403, 403)
    made.refresh_from_db()
    assert made.status == "approved"
    assert BaseImage.objects.count() == 1


def test_detail_routes_take_numbers_only() -> None:
    """base-images/check-dockerfile lives next to these routes and must never be read as an entry."""
    with pytest.raises(NoReverseMatch):
        reverse("api:base-image-detail", kwargs={"pk": "check-dockerfile"})
