"""/api/v1/offboarding/plan/ and /api/v1/offboardings/: the dry run, starting (and confirming at once),
confirming, cancelling, following the steps and the CSV report. Admins act, reviewers read, the rest
are refused; refusals and state conflicts are 400s in the usual error shape."""

from __future__ import annotations

import csv
import io
from contextlib import AbstractContextManager
from typing import Any, Protocol

import celery
import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal.models import AuditEvent
from registries import offboarding, offboarding_report, tasks
from registries.models import Offboarding, OffboardingStep
from tests import factories

pytestmark = pytest.mark.django_db

PLAN = reverse("api:offboarding-plan")
OFFBOARDINGS = reverse("api:offboarding-list")

# Every field over the API. A new one is added here on purpose: these name people and their keys.
OFFBOARDING_FIELDS = {
    "id",
    "person",
    "state",
    "trigger",
    "reason",
    "reassign_to",
    "started_by",
    "created_at",
    "confirmed_at",
    "finished_at",
    "verified_at",
}
DETAIL_FIELDS = OFFBOARDING_FIELDS | {"summary", "steps"}
STEP_FIELDS = {
    "id",
    "position",
    "key",
    "place",
    "action",
    "subject",
    "why",
    "automated",
    "evidence",
    "state",
    "attempts",
    "result",
    "done_at",
    "verification",
    "verification_note",
}
ITEM_FIELDS = {"key", "action", "subject", "why", "automated", "evidence"}


class CaptureOnCommit(Protocol):
    def __call__(self, *, execute: bool = False) -> AbstractContextManager[list[Any]]: ...


def detail(pk: int) -> str:
    return reverse("api:offboarding-detail", args=[pk])


def confirm_url(pk: int) -> str:
    return reverse("api:offboarding-confirm", args=[pk])


def cancel_url(pk: int) -> str:
    return reverse("api:offboarding-cancel", args=[pk])


def report_url(pk: int) -> str:
    return reverse("api:offboarding-report", args=[pk])


def post(client: Client, url: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return client.post(url, body or {}, content_type="application/json", headers=headers)


def error_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    error: dict[str, Any] = response.json()["error"]
    return error


def download(response: Any) -> str:
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What confirming hands to Celery once the transaction commits: the run, and the directory hook."""
    sent: list[Any] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", lambda pk: sent.append(("run_offboarding", pk)))
    monkeypatch.setattr(
        celery.current_app, "send_task", lambda name, args, *_, **options: sent.append((name, args[0]))
    )
    return sent


@pytest.fixture
def leaver() -> dict[str, Any]:
    """A person holding something in Customs and in a registry, one credential of which automation uses."""
    person = factories.user(username="leaving-lee")
    team = factories.group(display_name="Payments")
    factories.member(person, team)
    token, _ = factories.token(person, name="laptop")
    harbor = factories.registry(kind="harbor", name="harbor-eu")
    own = factories.registry_credential(harbor, name="lee-robot", owner_user=person)
    made = factories.registry_credential(harbor, name="ci-robot", created_by_user=person, usage_known=False)
    return {"person": person, "team": team, "token": token, "registry": harbor, "own": own, "made": made}


def planned(person: User | None = None, **fields: Any) -> Offboarding:
    return offboarding.start(person or factories.user(), actor=None, reason="left", **fields)


# --- the plan ------------------------------------------------------------------------------------


def test_the_plan_groups_items_by_place_and_names_the_reassigned(
    client: Client, admin: User, leaver: dict[str, Any]
) -> None:
    client.force_login(admin)
    response = client.get(PLAN, {"person": leaver["person"].pk})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["person"]["username"] == "leaving-lee"
    assert [place["place"] for place in body["places"]] == ["Customs", "harbor-eu"]
    items = {item["key"]: item for place in body["places"] for item in place["items"]}
    assert all(set(item) == ITEM_FIELDS for item in items.values())
    registry = leaver["registry"].pk
    token = items[f"customs/token-{leaver['token'].pk}"]
    assert (token["action"], token["automated"]) == ("revoke", True)
    assert "laptop" in token["subject"]
    assert items[f"customs/membership-{leaver['team'].pk}"]["action"] == "remove_membership"
    own = items[f"registry-{registry}/credential-{leaver['own'].pk}"]
    assert (own["action"], own["why"]) == ("disable", "their own credential")
    assert own["evidence"]["kind"] == "robot"
    made_key = f"registry-{registry}/credential-{leaver['made'].pk}"
    assert items[made_key]["action"] == "reassign"
    assert [item["key"] for item in body["reassigned"]] == [made_key]


def test_the_plan_changes_nothing(client: Client, reviewer: User, leaver: dict[str, Any]) -> None:
    client.force_login(reviewer)
    events = AuditEvent.objects.count()
    assert client.get(PLAN, {"person": leaver["person"].pk}).status_code == 200
    assert not Offboarding.objects.exists()
    assert AuditEvent.objects.count() == events
    leaver["token"].refresh_from_db()
    assert leaver["token"].revoked_at is None


@pytest.mark.parametrize("query", [{}, {"person": "999999"}, {"person": "lee"}])
def test_the_plan_needs_a_person(client: Client, admin: User, query: dict[str, str]) -> None:
    client.force_login(admin)
    error = error_of(client.get(PLAN, query))
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["person"]


# --- starting and confirming ---------------------------------------------------------------------


def test_an_admin_starts_an_offboarding_that_changes_nothing_yet(
    client: Client, admin: User, leaver: dict[str, Any], queued: list[Any]
) -> None:
    heir = factories.user()
    client.force_login(admin)
    response = post(
        client, OFFBOARDINGS, {"person": leaver["person"].pk, "reason": "left", "reassign_to": heir.pk}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    assert (body["state"], body["trigger"], body["reason"]) == ("planned", "manual", "left")
    assert (body["started_by"]["id"], body["reassign_to"]["id"]) == (admin.pk, heir.pk)
    run = Offboarding.objects.get(pk=body["id"])
    assert [step["key"] for step in body["steps"]] == list(
        run.steps.order_by("position").values_list("key", flat=True)
    )
    assert body["summary"]["steps"] == len(body["steps"]) == 4
    assert body["summary"]["by_state"]["pending"] == 4
    leaver["person"].refresh_from_db()
    assert leaver["person"].status == User.Status.ACTIVE
    assert queued == []


def test_confirming_through_the_api_cuts_them_off_and_queues_the_run(
    client: Client,
    admin: User,
    leaver: dict[str, Any],
    queued: list[Any],
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(admin)
    run = planned(leaver["person"], reassign_to=factories.user())
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, confirm_url(run.pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "running"
    assert body["confirmed_at"] is not None
    steps = {step["key"]: step for step in body["steps"]}
    token = steps[f"customs/token-{leaver['token'].pk}"]
    assert (token["state"], token["attempts"], token["result"]) == ("done", 1, "with the status change")
    assert body["summary"]["by_state"]["done"] == 1
    leaver["person"].refresh_from_db()
    assert leaver["person"].status == User.Status.DEPARTED
    assert ("run_offboarding", run.pk) in queued


def test_start_with_confirm_does_both_at_once(
    client: Client,
    admin: User,
    leaver: dict[str, Any],
    queued: list[Any],
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(admin)
    body = {"person": leaver["person"].pk, "reason": "left", "reassign_to": admin.pk, "confirm": True}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, OFFBOARDINGS, body)
    assert response.status_code == 201, response.content
    assert response.json()["state"] == "running"
    run = Offboarding.objects.get(person=leaver["person"])
    assert run.state == Offboarding.State.RUNNING
    assert ("run_offboarding", run.pk) in queued
    leaver["token"].refresh_from_db()
    assert leaver["token"].revoked_at is not None


def test_a_confirmation_that_fails_leaves_no_plan_behind(
    client: Client, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(run: Offboarding, *, actor: User | None) -> None:
        raise offboarding.OffboardingRefused("this offboarding is running")

    monkeypatch.setattr(offboarding, "confirm", refuse)
    client.force_login(admin)
    person = factories.user()
    error = error_of(post(client, OFFBOARDINGS, {"person": person.pk, "reason": "left", "confirm": True}))
    assert error["message"] == "this offboarding is running"
    assert not Offboarding.objects.filter(person=person).exists()


def test_refusals_are_400s_with_the_reason(client: Client, admin: User, leaver: dict[str, Any]) -> None:
    client.force_login(admin)
    person = leaver["person"]

    def refused(body: dict[str, Any]) -> str:
        error = error_of(post(client, OFFBOARDINGS, {"reason": "left"} | body))
        assert (error["code"], error["fields"]) == ("rejected", {})
        return str(error["message"])

    assert refused({"person": admin.pk}) == "you cannot offboard yourself"
    assert "choose who takes them over" in refused({"person": person.pk})
    assert (
        refused({"person": person.pk, "reassign_to": person.pk})
        == "re-assign to someone else who is still active"
    )
    gone = factories.user(status=User.Status.DEPARTED, is_active=False)
    assert (
        refused({"person": person.pk, "reassign_to": gone.pk})
        == "re-assign to someone else who is still active"
    )
    other = factories.user()
    planned(other)
    assert "already has an offboarding that has not finished" in refused({"person": other.pk})
    assert Offboarding.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"person", "reason"}),
        ({"person": 999999, "reason": "left"}, {"person"}),
        ({"person": "lee", "reason": "left"}, {"person"}),
        ({"person": None, "reason": ""}, {"person", "reason"}),
        ({"reason": "left", "reassign_to": 999999}, {"person", "reassign_to"}),
        ({"reason": "left", "confirm": "perhaps"}, {"person", "confirm"}),
    ],
)
def test_bad_payloads_name_their_fields(
    client: Client, admin: User, body: dict[str, Any], fields: set[str]
) -> None:
    client.force_login(admin)
    error = error_of(post(client, OFFBOARDINGS, body))
    assert error["code"] == "invalid"
    assert set(error["fields"]) == fields
    assert not Offboarding.objects.exists()


# --- state conflicts and cancelling ----------------------------------------------------------------


def test_a_plan_is_cancelled_once_and_then_neither_confirmed_nor_cancelled(
    client: Client, admin: User
) -> None:
    run = planned()
    client.force_login(admin)
    response = post(client, cancel_url(run.pk))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = error_of(post(client, cancel_url(run.pk)))
    assert again["message"] == "this offboarding is cancelled: only a plan can be cancelled"
    assert error_of(post(client, confirm_url(run.pk)))["message"] == "this offboarding is cancelled"
    run.person.refresh_from_db()
    assert run.person.status == User.Status.ACTIVE


def test_a_running_offboarding_cannot_be_confirmed_again_or_cancelled(
    client: Client, admin: User, queued: list[Any]
) -> None:
    run = planned()
    offboarding.confirm(run, actor=None)
    client.force_login(admin)
    assert error_of(post(client, confirm_url(run.pk)))["message"] == "this offboarding is running"
    message = error_of(post(client, cancel_url(run.pk)))["message"]
    assert message == "this offboarding is running: only a plan can be cancelled"
    run.refresh_from_db()
    assert run.state == Offboarding.State.RUNNING


@pytest.mark.parametrize("name", ["api:offboarding-detail", "api:offboarding-report"])
def test_unknown_offboardings_are_404_to_read(client: Client, admin: User, name: str) -> None:
    client.force_login(admin)
    response = client.get(reverse(name, args=[999999]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("name", ["api:offboarding-confirm", "api:offboarding-cancel"])
def test_unknown_offboardings_are_404_to_change(client: Client, admin: User, name: str) -> None:
    client.force_login(admin)
    response = post(client, reverse(name, args=[999999]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- reading: list, filters, detail ----------------------------------------------------------------


def test_the_list_is_paginated_newest_first_and_filters(client: Client, reviewer: User) -> None:
    ann, bob = factories.user(), factories.user()
    first = planned(ann)
    offboarding.cancel(first, actor=None)
    second, third = planned(ann), planned(bob)
    client.force_login(reviewer)

    def ids(query: dict[str, Any]) -> list[int]:
        response = client.get(OFFBOARDINGS, query)
        assert response.status_code == 200, response.content
        assert response.json()["count"] == len(response.json()["results"])
        return [row["id"] for row in response.json()["results"]]

    assert ids({}) == [third.pk, second.pk, first.pk]
    assert ids({"state": "planned"}) == [third.pk, second.pk]
    assert ids({"state": "cancelled"}) == [first.pk]
    assert ids({"person": ann.pk}) == [second.pk, first.pk]
    assert ids({"person": bob.pk, "state": "cancelled"}) == []
    assert ids({"trigger": "directory"}) == []
    rows = client.get(OFFBOARDINGS, {"page_size": 1}).json()
    assert (rows["count"], len(rows["results"]), rows["next"] is not None) == (3, 1, True)
    assert set(rows["results"][0]) == OFFBOARDING_FIELDS  # the list leaves steps to the detail


@pytest.mark.parametrize(("query", "field"), [({"state": "gone"}, "state"), ({"person": "999999"}, "person")])
def test_a_bad_filter_is_a_400_naming_it(
    client: Client, reviewer: User, query: dict[str, str], field: str
) -> None:
    client.force_login(reviewer)
    assert list(error_of(client.get(OFFBOARDINGS, query))["fields"]) == [field]


def test_the_detail_shows_each_step_and_the_summary(
    client: Client, reviewer: User, leaver: dict[str, Any]
) -> None:
    run = planned(leaver["person"], reassign_to=factories.user())
    made_key = f"registry-{leaver['registry'].pk}/credential-{leaver['made'].pk}"
    own_key = f"registry-{leaver['registry'].pk}/credential-{leaver['own'].pk}"
    run.steps.filter(key=own_key).update(
        state=OffboardingStep.State.FAILED, attempts=2, result="403 from harbor", verification="present"
    )
    run.steps.filter(key=made_key).update(verification="kept", verification_note="re-assigned on purpose")
    client.force_login(reviewer)
    response = client.get(detail(run.pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    assert body["person"] == {
        "id": leaver["person"].pk,
        "username": "leaving-lee",
        "display_name": leaver["person"].display_name,
        "status": "active",
    }
    assert body["started_by"] is None  # the system started it
    assert [step["position"] for step in body["steps"]] == [1, 2, 3, 4]
    assert all(set(step) == STEP_FIELDS for step in body["steps"])
    steps = {step["key"]: step for step in body["steps"]}
    own = steps[own_key]
    assert (own["state"], own["attempts"], own["result"], own["verification"]) == (
        "failed",
        2,
        "403 from harbor",
        "present",
    )
    assert (own["place"], own["action"], own["automated"]) == ("harbor-eu", "disable", True)
    assert steps[made_key]["verification_note"] == "re-assigned on purpose"
    summary = body["summary"]
    assert (summary["steps"], summary["failed"], summary["still_present"]) == (4, 1, 1)
    assert summary["by_state"] == {"pending": 3, "done": 0, "failed": 1, "manual": 0}
    assert summary["by_verification"] == {"": 2, "gone": 0, "present": 1, "kept": 1, "unverifiable": 0}
    assert summary["places"] == ["Customs", "harbor-eu"]


def test_the_list_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            planned(reassign_to=factories.user())

    client.force_login(reviewer)
    add(2)
    # session, user, role, count, page (person, heir and starter joined)
    with django_assert_num_queries(5):
        assert client.get(OFFBOARDINGS).status_code == 200
    add(20)
    with django_assert_num_queries(5):
        assert client.get(OFFBOARDINGS).status_code == 200


def test_the_detail_budget_does_not_grow_with_steps(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    person = factories.user()
    run = planned(person)
    client.force_login(reviewer)
    # session, user, role, offboarding (people joined), steps, summary
    with django_assert_num_queries(6):
        assert client.get(detail(run.pk)).status_code == 200
    offboarding.cancel(run, actor=None)
    for _ in range(10):
        factories.token(person)
    more = planned(person)
    assert more.steps.count() == 10
    with django_assert_num_queries(6):
        assert client.get(detail(more.pk)).status_code == 200


# --- the report ------------------------------------------------------------------------------------


def test_the_report_is_the_csv_of_every_step(client: Client, reviewer: User, leaver: dict[str, Any]) -> None:
    run = planned(leaver["person"], reassign_to=factories.user())
    client.force_login(reviewer)
    response = client.get(report_url(run.pk))
    text = download(response)
    assert response["Content-Type"].startswith("text/csv")
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="customs-offboarding-{run.pk}-leaving-lee.csv"'
    )
    assert response["Cache-Control"] == "no-store"
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert tuple(header) == offboarding_report.CSV_COLUMNS
    assert [row[header.index("position")] for row in rows] == ["1", "2", "3", "4"]
    assert {row[header.index("person")] for row in rows} == {"leaving-lee"}
    by_subject = {row[header.index("subject")]: row for row in rows}
    own = by_subject[f"{leaver['own'].get_kind_display()} lee-robot"]
    assert (own[header.index("action")], own[header.index("state")]) == ("disable", "pending")


def test_the_report_answers_a_client_asking_for_csv(client: Client, reviewer: User) -> None:
    run = planned()
    client.force_login(reviewer)
    assert download(client.get(report_url(run.pk), headers={"Accept": "text/csv"})).startswith("offboarding,")
    missing = client.get(report_url(999999), headers={"Accept": "text/csv"})
    assert missing.status_code == 404
    assert missing.content.decode().splitlines()[1] == "not_found,not found"


# --- who may do what ---------------------------------------------------------------------------------


def reads(run: Offboarding, person: User) -> list[tuple[str, dict[str, Any]]]:
    return [
        (PLAN, {"person": person.pk}),
        (OFFBOARDINGS, {}),
        (detail(run.pk), {}),
        (report_url(run.pk), {}),
    ]


def writes(run: Offboarding, person: User) -> list[tuple[str, dict[str, Any]]]:
    return [
        (OFFBOARDINGS, {"person": person.pk, "reason": "left"}),
        (confirm_url(run.pk), {}),
        (cancel_url(run.pk), {}),
    ]


def test_reviewers_read_everything_and_change_nothing(client: Client, reviewer: User) -> None:
    person, run = factories.user(), planned()
    client.force_login(reviewer)
    for url, query in reads(run, person):
        assert client.get(url, query).status_code == 200, url
    for url, body in writes(run, person):
        response = post(client, url, body)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "permission_denied"
    run.refresh_from_db()
    assert run.state == Offboarding.State.PLANNED
    assert not Offboarding.objects.filter(person=person).exists()


@pytest.mark.parametrize("who", ["developer", "anonymous"])
def test_developers_and_strangers_are_refused(client: Client, developer: User, who: str) -> None:
    person, run = factories.user(username="secret-sam"), planned()
    factories.token(person, name="sams-laptop")
    expected = 403 if who == "developer" else 401
    if who == "developer":
        client.force_login(developer)
    for url, query in reads(run, person):
        response = client.get(url, query)
        assert response.status_code == expected, url
        assert b"sams-laptop" not in response.content
    for url, body in writes(run, person):
        assert post(client, url, body).status_code == expected, url
    run.refresh_from_db()
    assert run.state == Offboarding.State.PLANNED
    assert Offboarding.objects.count() == 1


def test_a_read_token_of_a_reviewer_reads_and_exports(client: Client, reviewer: User) -> None:
    run = planned()
    _, secret = factories.token(reviewer, scopes=["read"])
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get(OFFBOARDINGS, headers=bearer).json()["count"] == 1
    assert client.get(detail(run.pk), headers=bearer).json()["id"] == run.pk
    assert download(client.get(report_url(run.pk), headers=bearer)).startswith("offboarding,")


def test_an_admin_token_acts_only_when_it_may_write(client: Client, admin: User, queued: list[Any]) -> None:
    person = factories.user()
    _, read_only = factories.token(admin, scopes=["read"])
    body = {"person": person.pk, "reason": "left"}
    refused = post(client, OFFBOARDINGS, body, Authorization=f"Bearer {read_only}")
    assert refused.status_code == 403
    _, writer = factories.token(admin, scopes=["read", "write"])
    started = post(client, OFFBOARDINGS, body, Authorization=f"Bearer {writer}")
    assert started.status_code == 201, started.content
    assert started.json()["started_by"]["id"] == admin.pk
    confirmed = post(client, confirm_url(started.json()["id"]), Authorization=f"Bearer {writer}")
    assert confirmed.json()["state"] == "running"


def test_the_schema_describes_every_endpoint(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/offboardings/"]) == {"get", "post"}
    for path in (
        "/api/v1/offboarding/plan/",
        "/api/v1/offboardings/{id}/",
        "/api/v1/offboardings/{id}/report.csv",
    ):
        assert set(paths[path]) == {"get"}, path
    for path in ("/api/v1/offboardings/{id}/confirm/", "/api/v1/offboardings/{id}/cancel/"):
        assert set(paths[path]) == {"post"}, path
    created = paths["/api/v1/offboardings/"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/OffboardingDetail")
