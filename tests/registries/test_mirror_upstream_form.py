"""Where the mirror job reads a catalog entry, and as whom: the Upstream form on the entry's edit page and
PUT /api/v1/base-images/<id>/upstream/. The password goes in and never comes back out: not in the page,
the audit trail, the API or the logs, and not in the clear in the database."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from portal.models import AuditEvent
from registries.mirror import jobs
from registries.models import BaseImage, MirrorSource
from registries.policy import catalog_io
from registries.policy.catalog_io import EntrySpec

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

SECRET = "dckr_pat_Zq81xWv0upstream"  # unlike anything else a page or event holds
OTHER_SECRET = "dckr_pat_Kp27second"
CACHE = "https://cache.example.test"


@pytest.fixture
def entry() -> BaseImage:
    return catalog_io.save_base_image(None, EntrySpec(name="docker.io/library/python"), actor=None)


def upstream_url(made: BaseImage) -> str:
    return reverse("registries:base_image_upstream", args=[made.pk])


def edit_url(made: BaseImage) -> str:
    return reverse("registries:base_image_edit", args=[made.pk])


def api_url(made: BaseImage) -> str:
    return reverse("api:base-image-upstream", args=[made.pk])


def form(**fields: Any) -> dict[str, Any]:
    return {"endpoint": CACHE, "username": "hubuser", "password": ""} | fields


def body(response: Response) -> str:
    return response.content.decode()


def stored(made: BaseImage) -> MirrorSource | None:
    return MirrorSource.objects.filter(base_image=made).first()


def raw_secret_column(made: BaseImage) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM registries_mirrorsource WHERE base_image_id = %s", [made.pk])
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def upstream_events(made: BaseImage) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(
        action="base_image.update", target_type="registries.baseimage", target_id=str(made.pk)
    )
    return [e for e in events.order_by("sequence") if "mirror_source" in e.detail]


def all_audit_text() -> str:
    return str(list(AuditEvent.objects.values_list("detail", "target_label", "actor_label")))


def set_login(made: BaseImage, password: str = SECRET) -> None:
    jobs.save_mirror_source(made, actor=None, endpoint=CACHE, username="hubuser", password=password)


# --- The page ---------------------------------------------------------------------------------------


def test_the_edit_page_offers_the_upstream_form_with_no_password_set(
    client: Client, admin: User, entry: BaseImage
) -> None:
    client.force_login(admin)

    page = body(client.get(edit_url(entry)))

    assert "Upstream" in page
    assert f'action="{upstream_url(entry)}"' in page
    assert "not set" in page
    assert 'name="clear_password"' not in page  # nothing to clear
    assert 'type="password"' in page


def test_an_admin_sets_the_endpoint_and_login(client: Client, admin: User, entry: BaseImage) -> None:
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(endpoint=CACHE + "/", password=SECRET))

    assert response.status_code == 302
    assert response["Location"] == edit_url(entry)
    made = jobs.upstream_endpoint(entry)
    assert (made.url, made.username, made.password) == (CACHE, "hubuser", SECRET)
    [event] = upstream_events(entry)
    assert event.actor_label == admin.get_username()
    assert event.detail["mirror_source"] == {"endpoint": CACHE, "username": "hubuser"}
    assert event.detail["secrets_changed"] == ["password"]


def test_the_page_says_set_and_never_renders_the_password(
    client: Client, admin: User, entry: BaseImage
) -> None:
    client.force_login(admin)
    client.post(upstream_url(entry), form(password=SECRET))

    page = body(client.get(edit_url(entry)))

    assert SECRET not in page
    assert "<strong>set</strong>" in page
    assert 'name="clear_password"' in page
    assert f'value="{CACHE}"' in page  # the endpoint and username are not secret: shown for editing
    assert 'value="hubuser"' in page


def test_an_empty_password_keeps_the_stored_one(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(username="otheruser", password=""))

    assert response.status_code == 302
    source = stored(entry)
    assert source is not None
    assert (source.username, source.password) == ("otheruser", SECRET)
    assert upstream_events(entry)[-1].detail["secrets_changed"] == []


def test_a_new_password_replaces_the_stored_one(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)

    client.post(upstream_url(entry), form(password=OTHER_SECRET))

    source = stored(entry)
    assert source is not None
    assert source.password == OTHER_SECRET


def test_clear_removes_the_stored_password(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(username="", clear_password="on"))

    assert response.status_code == 302
    source = stored(entry)
    assert source is not None
    assert (source.username, source.password) == ("", "")
    assert raw_secret_column(entry) == ""
    assert upstream_events(entry)[-1].detail["secrets_changed"] == ["password"]
    assert "not set" in body(client.get(edit_url(entry)))


def test_a_new_password_and_clear_together_are_refused(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(password=OTHER_SECRET, clear_password="on"))

    assert response.status_code == 200
    assert "not both" in body(response)
    assert OTHER_SECRET not in body(response)
    source = stored(entry)
    assert source is not None
    assert source.password == SECRET


def test_submitting_what_is_stored_records_nothing(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)
    before = AuditEvent.objects.count()  # after signing in, which is audited

    response = client.post(upstream_url(entry), form())

    assert response.status_code == 302
    assert AuditEvent.objects.count() == before
    assert "unchanged" in body(client.get(edit_url(entry)))


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("cache.example.test", "must start with https://"),
        ("ftp://cache.example.test", "must start with https://"),
        ("https://user:pw@cache.example.test", "must not carry credentials"),
        ("https://", "names no host"),
        ("https://cache.example.test/?token=1", "no ?query"),
        ("https://[::1", "Invalid IPv6 URL"),
    ],
)
def test_a_bad_endpoint_is_a_form_error_and_nothing_is_saved(
    client: Client, admin: User, entry: BaseImage, endpoint: str, reason: str
) -> None:
    client.force_login(admin)
    before = AuditEvent.objects.count()

    response = client.post(upstream_url(entry), form(endpoint=endpoint, password=SECRET))

    assert response.status_code == 200
    assert reason in body(response)
    assert SECRET not in body(response)  # what was typed is not echoed back either
    assert stored(entry) is None
    assert AuditEvent.objects.count() == before


def test_a_password_needs_a_username(client: Client, admin: User, entry: BaseImage) -> None:
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(username="", password=SECRET))

    assert response.status_code == 200
    assert "enter the username" in body(response)
    assert stored(entry) is None


def test_removing_the_username_while_a_password_stays_is_refused(
    client: Client, admin: User, entry: BaseImage
) -> None:
    set_login(entry)
    client.force_login(admin)

    response = client.post(upstream_url(entry), form(username=""))

    assert response.status_code == 200
    source = stored(entry)
    assert source is not None
    assert source.username == "hubuser"


def test_the_password_is_encrypted_at_rest(client: Client, admin: User, entry: BaseImage) -> None:
    client.force_login(admin)

    client.post(upstream_url(entry), form(password=SECRET))

    column = raw_secret_column(entry)
    assert column
    assert SECRET not in column
    source = stored(entry)
    assert source is not None
    assert source.password == SECRET  # and Customs reads it back


def test_the_secret_is_in_no_page_event_response_or_log(
    client: Client, admin: User, entry: BaseImage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(admin)

    client.post(upstream_url(entry), form(password=SECRET))
    page = body(client.get(edit_url(entry)))
    api = client.put(api_url(entry), {"username": "hubuser", "password": OTHER_SECRET}, "application/json")
    detail = client.get(reverse("api:base-image-detail", args=[entry.pk]))
    audit_page = client.get(reverse("portal:audit"))

    assert len(upstream_events(entry)) == 2
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in page
        assert secret not in body(api)
        assert secret not in body(detail)
        assert secret not in body(audit_page)
        assert secret not in all_audit_text()
        assert secret not in caplog.text


@pytest.mark.parametrize("who", ["reviewer", "developer", "anonymous"])
def test_only_admins_set_the_upstream(
    client: Client, cast: dict[str, User | None], entry: BaseImage, who: str
) -> None:
    if (user := cast[who]) is not None:
        client.force_login(user)

    page = client.post(upstream_url(entry), form(password=SECRET))
    api = client.put(api_url(entry), form(password=SECRET), "application/json")

    assert page.status_code == (302 if who == "anonymous" else 403)  # anonymous: to the sign-in page
    assert api.status_code == (401 if who == "anonymous" else 403)
    assert stored(entry) is None


def test_an_unknown_entry_is_a_404(client: Client, admin: User) -> None:
    client.force_login(admin)
    gone = BaseImage.objects.create(name="docker.io/library/gone")
    url, api = upstream_url(gone), api_url(gone)
    gone.delete()

    assert client.post(url, form(password=SECRET)).status_code == 404
    assert client.put(api, form(password=SECRET), "application/json").status_code == 404


# --- The API ----------------------------------------------------------------------------------------


def test_an_admin_sets_the_upstream_over_the_api(client: Client, admin: User, entry: BaseImage) -> None:
    client.force_login(admin)

    response = client.put(api_url(entry), form(password=SECRET), "application/json")

    assert response.status_code == 200
    assert response.json() | {"updated_at": None} == {
        "endpoint": CACHE,
        "username": "hubuser",
        "password_set": True,
        "updated_at": None,
    }
    made = jobs.upstream_endpoint(entry)
    assert (made.url, made.username, made.password) == (CACHE, "hubuser", SECRET)
    assert SECRET not in raw_secret_column(entry)


def test_the_api_keeps_an_omitted_password_and_clears_on_request(
    client: Client, admin: User, entry: BaseImage
) -> None:
    set_login(entry)
    client.force_login(admin)

    kept = client.put(api_url(entry), {"username": "otheruser"}, "application/json")
    source = stored(entry)
    assert source is not None
    assert (kept.status_code, kept.json()["password_set"]) == (200, True)
    assert (source.endpoint, source.username, source.password) == ("", "otheruser", SECRET)

    cleared = client.put(api_url(entry), {"clear_password": True}, "application/json")
    source = stored(entry)
    assert source is not None
    assert (cleared.status_code, cleared.json()["password_set"]) == (200, False)
    assert (source.username, source.password) == ("", "")


def test_the_api_refuses_a_bad_endpoint_and_saves_nothing(
    client: Client, admin: User, entry: BaseImage
) -> None:
    client.force_login(admin)

    response = client.put(api_url(entry), form(endpoint="ftp://x", password=SECRET), "application/json")

    assert response.status_code == 400
    assert "endpoint" in response.json()["error"]["fields"]
    assert SECRET not in body(response)
    assert stored(entry) is None


def test_the_api_refuses_a_password_without_a_username(client: Client, admin: User, entry: BaseImage) -> None:
    client.force_login(admin)

    response = client.put(api_url(entry), {"password": SECRET}, "application/json")

    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]
    assert stored(entry) is None


def test_the_upstream_cannot_be_read_back_over_the_api(client: Client, admin: User, entry: BaseImage) -> None:
    set_login(entry)
    client.force_login(admin)

    assert client.get(api_url(entry)).status_code == 405


def test_clearing_when_no_password_is_stored_records_nothing(
    client: Client, admin: User, entry: BaseImage
) -> None:
    jobs.save_mirror_source(entry, actor=None, endpoint=CACHE)
    client.force_login(admin)
    before = AuditEvent.objects.count()

    response = client.put(api_url(entry), {"endpoint": CACHE, "clear_password": True}, "application/json")

    assert (response.status_code, response.json()["password_set"]) == (200, False)
    assert AuditEvent.objects.count() == before
