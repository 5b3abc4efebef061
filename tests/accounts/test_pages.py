"""The settings, credentials and access pages: what they show, what they change, what they cost."""

from __future__ import annotations

import logging
import re
import warnings
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.core.paginator import UnorderedObjectListWarning
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts import services
from accounts.models import PersonalToken, RoleBinding, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

SETTINGS = reverse("accounts:settings")
CREDENTIALS = reverse("accounts:credentials")
ACCESS = reverse("accounts:access")
TOKEN_SHAPE = re.compile(r"cst_[A-Za-z0-9_-]{20,}")


def new_token(client: Client, **fields: object) -> Response:
    data: dict[str, object] = {"name": "laptop", "kind": "api", "days": 30} | fields
    return client.post(SETTINGS, data)


def revoke(client: Client, token: PersonalToken, back: str = "") -> Response:
    return client.post(reverse("accounts:token_revoke", args=[token.pk]), {"back": back})


# --- Settings: your tokens -----------------------------------------------------------------------


def test_a_new_tokens_secret_is_shown_once_and_never_cached(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = new_token(client, write="on")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    shown = TOKEN_SHAPE.findall(response.content.decode())
    assert len(shown) == 1
    token = PersonalToken.objects.get(owner=developer)
    assert token.scopes == ["read", "write"]
    assert token.lookup == shown[0][:12]

    reloaded = client.get(SETTINGS)
    assert reloaded.status_code == 200
    assert token.lookup in reloaded.content.decode()  # listed by its prefix ...
    assert shown[0][12:] not in reloaded.content.decode()  # ... and never again in full
    assert TOKEN_SHAPE.findall(reloaded.content.decode()) == []


def test_the_secret_does_not_travel_through_a_redirect_or_the_session(
    client: Client, developer: User
) -> None:
    client.force_login(developer)
    response = new_token(client)
    secret = TOKEN_SHAPE.findall(response.content.decode())[0]
    assert "Location" not in response
    assert all(secret[12:] not in str(value) for value in client.session.values())


def test_an_unticked_write_box_makes_a_read_only_token(client: Client, developer: User) -> None:
    client.force_login(developer)
    new_token(client)
    new_token(client, name="docker", kind="registry", write="on")
    scopes = dict(PersonalToken.objects.filter(owner=developer).values_list("name", "scopes"))
    assert scopes == {"laptop": ["read"], "docker": ["registry"]}


def test_the_secret_stays_out_of_the_logs(
    client: Client, developer: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(developer)
    secret = TOKEN_SHAPE.findall(new_token(client).content.decode())[0]
    token = PersonalToken.objects.get(owner=developer)
    revoke(client, token)
    client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})  # revoked now: a logged 401
    assert "Unauthorized" in caplog.text
    assert secret[12:] not in caplog.text


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"days": 366}, "Ensure this value is less than or equal to 365."),
        ({"days": 0}, "Ensure this value is greater than or equal to 1."),
        ({"name": "  "}, "This field is required."),
    ],
)
def test_an_impossible_token_is_refused_on_the_form(
    client: Client, developer: User, fields: dict[str, object], error: str
) -> None:
    client.force_login(developer)
    response = new_token(client, **fields)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert "no-store" not in response.get("Cache-Control", "")
    assert not PersonalToken.objects.filter(owner=developer).exists()


def test_the_settings_page_lists_only_your_own_tokens(client: Client, admin: User) -> None:
    mine, _ = factories.token(admin, name="admins-laptop")
    factories.token(factories.user(), name="someone-elses")
    client.force_login(admin)
    page = client.get(SETTINGS).content.decode()
    assert "admins-laptop" in page
    assert "someone-elses" not in page  # even for an admin: settings are personal


def test_an_owner_revokes_their_token_from_settings(client: Client, developer: User) -> None:
    token, _ = factories.token(developer, name="old-laptop")
    client.force_login(developer)
    response = revoke(client, token)
    assert response.status_code == 302
    assert response["Location"] == SETTINGS
    token.refresh_from_db()
    assert token.revoked_at is not None
    page = client.get(SETTINGS).content.decode()
    assert "Token “old-laptop” revoked." in page
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED)
    assert (event.actor_id, event.target_id) == (developer.pk, str(token.pk))


def test_revoking_again_changes_nothing_and_says_nothing(client: Client, developer: User) -> None:
    token, _ = factories.token(developer, name="old-laptop")
    client.force_login(developer)
    revoke(client, token)
    client.get(SETTINGS)  # read the first message
    assert revoke(client, token).status_code == 302
    assert "revoked." not in client.get(SETTINGS).content.decode()
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).count() == 1


def test_an_admin_revokes_anyones_token_and_returns_to_credentials(
    client: Client, admin: User, developer: User
) -> None:
    token, _ = factories.token(developer)
    client.force_login(admin)
    response = revoke(client, token, back="credentials")
    assert response["Location"] == CREDENTIALS
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED).actor_id == admin.pk


def test_a_reviewer_cannot_revoke_and_an_outsider_cannot_find_anothers_token(
    client: Client, reviewer: User, developer: User
) -> None:
    token, _ = factories.token(developer)
    client.force_login(reviewer)
    assert revoke(client, token).status_code == 403
    client.force_login(factories.user())
    assert revoke(client, token).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).exists()


def test_revoke_never_redirects_off_site(client: Client, developer: User) -> None:
    token, _ = factories.token(developer)
    client.force_login(developer)
    assert revoke(client, token, back="https://evil.example/")["Location"] == SETTINGS


# --- Credentials: every token, for reviewers ------------------------------------------------------


def test_credentials_show_active_tokens_of_everyone_by_default(client: Client, reviewer: User) -> None:
    live, _ = factories.token(factories.user(username="alice"), name="alice-ci")
    gone, _ = factories.token(factories.user(username="bob"), name="bob-old")
    services.revoke_token(gone, actor=None)
    client.force_login(reviewer)
    page = client.get(CREDENTIALS).content.decode()
    assert "alice-ci" in page
    assert "alice" in page
    assert "bob-old" not in page
    assert "bob-old" in client.get(f"{CREDENTIALS}?state=all").content.decode()
    assert "Revoke token alice-ci" not in page  # reviewers read, they do not revoke


def test_admins_get_revoke_buttons_on_credentials(client: Client, admin: User) -> None:
    factories.token(factories.user(), name="some-ci")
    client.force_login(admin)
    assert "Revoke token some-ci" in client.get(CREDENTIALS).content.decode()


def test_credentials_never_show_a_secret(client: Client, reviewer: User) -> None:
    _, secret = factories.token(factories.user())
    client.force_login(reviewer)
    for url in (CREDENTIALS, f"{CREDENTIALS}?state=all"):
        assert secret[12:] not in client.get(url).content.decode()


def test_expired_tokens_are_not_active_on_credentials(client: Client, reviewer: User) -> None:
    token, _ = factories.token(factories.user(), name="expired-ci")
    PersonalToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))
    client.force_login(reviewer)
    assert "expired-ci" not in client.get(CREDENTIALS).content.decode()
    assert "expired-ci" in client.get(f"{CREDENTIALS}?state=all").content.decode()


def test_the_credentials_query_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add_tokens(count: int) -> None:
        for _ in range(count):
            factories.token(factories.user())

    client.force_login(reviewer)
    add_tokens(2)
    # session, user, role, count, page (owners joined), robot tokens (groups and creators joined)
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200
    add_tokens(20)
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200


# --- Access: groups and the roles bound to them --------------------------------------------------


def test_the_access_page_lists_groups_with_member_counts_and_roles(client: Client, reviewer: User) -> None:
    group = factories.group(display_name="Payments team", external_id="f3c1-payments")
    for _ in range(3):
        factories.member(factories.user(), group)
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    factories.group(display_name="Empty team")
    client.force_login(reviewer)
    response = client.get(ACCESS)
    rows = {g.display_name: g.member_count for g in response.context["page"].object_list}
    assert rows["Payments team"] == 3
    assert rows["Empty team"] == 0
    page = response.content.decode()
    assert "f3c1-payments" in page
    assert '<td class="num">3</td>' in page
    assert "Grant role" not in page  # reviewers see bindings, only admins change them


def test_the_access_page_searches_by_name_or_exact_id(client: Client, reviewer: User) -> None:
    factories.group(display_name="Payments team", external_id="f3c1-payments")
    factories.group(display_name="Search team", external_id="a7d2-search")
    client.force_login(reviewer)

    def names(query: str) -> list[str]:
        return [g.display_name for g in client.get(ACCESS, {"q": query}).context["page"].object_list]

    assert names("paym") == ["Payments team"]
    assert names("a7d2-search") == ["Search team"]
    assert names("a7d2") == []  # ids match exactly: they are opaque, not words


def test_groups_on_the_access_page_are_in_name_order(client: Client, reviewer: User) -> None:
    for name in ("delta", "alpha", "charlie", "bravo"):
        factories.member(factories.user(), factories.group(display_name=f"zz-{name}"))
    client.force_login(reviewer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnorderedObjectListWarning)
        response = client.get(ACCESS, {"q": "zz-"})
    names = [g.display_name for g in response.context["page"].object_list]
    assert names == ["zz-alpha", "zz-bravo", "zz-charlie", "zz-delta"]


def test_the_access_query_budget_does_not_grow_with_rows(
    client: Client, admin: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add_groups(count: int) -> None:
        for _ in range(count):
            group = factories.group()
            factories.member(factories.user(), group)
            RoleBinding.objects.create(group=group, role=Role.REVIEWER, created_by=admin)

    client.force_login(admin)
    add_groups(2)
    # session, user, role, group count, group page, their bindings, all bindings, the form's groups
    with django_assert_num_queries(8):
        assert client.get(ACCESS).status_code == 200
    add_groups(20)
    with django_assert_num_queries(8):
        assert client.get(ACCESS).status_code == 200


def test_the_group_page_lists_its_members(client: Client, reviewer: User) -> None:
    group = factories.group(display_name="Payments team")
    alice, bob = factories.user(username="alice-p"), factories.user(username="bob-p")
    factories.member(alice, group)
    factories.member(bob, group)
    factories.user(username="carol-p")
    client.force_login(reviewer)
    page = client.get(reverse("accounts:group_detail", args=[group.pk])).content.decode()
    assert "alice-p" in page
    assert "bob-p" in page
    assert "carol-p" not in page


def test_a_missing_group_is_a_404(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    assert client.get(reverse("accounts:group_detail", args=[999999])).status_code == 404


def test_an_admin_grants_a_role_from_the_access_page(client: Client, admin: User) -> None:
    group = factories.group(display_name="Security")
    client.force_login(admin)
    response = client.post(reverse("accounts:role_binding_create"), {"group": group.pk, "role": "reviewer"})
    assert response["Location"] == ACCESS
    binding = RoleBinding.objects.get(group=group)
    assert (binding.role, binding.created_by) == (Role.REVIEWER, admin)
    assert AuditEvent.objects.filter(
        action=AuditAction.ROLE_BINDING_CREATED, target_id=str(binding.pk), actor_id=admin.pk
    ).exists()
    assert "Role granted." in client.get(ACCESS).content.decode()


def test_granting_a_role_twice_shows_why_it_was_refused(client: Client, admin: User) -> None:
    group = factories.group(display_name="Security")
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    client.force_login(admin)
    response = client.post(
        reverse("accounts:role_binding_create"), {"group": group.pk, "role": "admin"}, follow=True
    )
    assert "Security already holds the Admin role" in response.content.decode()
    assert RoleBinding.objects.filter(group=group).count() == 1


@pytest.mark.parametrize(
    "data", [{"role": "admin"}, {"group": 999999, "role": "admin"}, {"role": "developer"}]
)
def test_an_incomplete_grant_is_refused_with_a_message(
    client: Client, admin: User, data: dict[str, object]
) -> None:
    before = RoleBinding.objects.count()
    client.force_login(admin)
    response = client.post(reverse("accounts:role_binding_create"), data, follow=True)
    assert "Choose a group and a role." in response.content.decode()
    assert RoleBinding.objects.count() == before


def test_a_reviewer_cannot_grant_themselves_admin(client: Client, reviewer: User) -> None:
    own_group = reviewer.directory_groups.get()
    client.force_login(reviewer)
    response = client.post(reverse("accounts:role_binding_create"), {"group": own_group.pk, "role": "admin"})
    assert response.status_code == 403
    assert not RoleBinding.objects.filter(group=own_group, role=Role.ADMIN).exists()


def test_an_admin_removes_a_binding_from_the_access_page(client: Client, admin: User) -> None:
    group = factories.group(display_name="Security")
    binding = RoleBinding.objects.create(group=group, role=Role.REVIEWER)
    client.force_login(admin)
    url = reverse("accounts:role_binding_delete", args=[binding.pk])
    response = client.post(url, follow=True)
    assert "Security no longer holds the Reviewer role." in response.content.decode()
    assert not RoleBinding.objects.filter(pk=binding.pk).exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.ROLE_BINDING_DELETED, target_id=str(binding.pk)
    ).exists()
    assert client.post(url).status_code == 404  # already gone
