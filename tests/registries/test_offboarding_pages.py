"""Offboarding pages: search and history, the plan and starting it, confirming and cancelling, the
live progress fragment, the reviewer's report and its CSV, and who may do what."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import celery
import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from registries import offboarding, offboarding_report, tasks
from registries.models import Offboarding, OffboardingStep, Registry
from tests import factories
from tests.fakes.harbor import FakeHarbor

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

INDEX = reverse("registries:offboardings")


def body(response: Response) -> str:
    return response.content.decode()


def plan_url(person: User) -> str:
    return reverse("registries:offboarding_plan", kwargs={"user_id": person.pk})


def url(name: str, planned: Offboarding) -> str:
    return reverse(f"registries:{name}", kwargs={"offboarding_id": planned.pk})


def messages_of(response: Response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What confirming hands to workers after commit: the run, and the directory hook (by name)."""
    sent: list[Any] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", sent.append)
    monkeypatch.setattr(celery.current_app, "send_task", lambda name, args, *_, **options: sent.append(name))
    return sent


@pytest.fixture
def leaver() -> User:
    """Someone with a Customs token and a group membership: two steps the worker carries out."""
    person = factories.user(username="leaver", display_name="Lee Leaver", email="lee@corp.example")
    factories.token(person)
    factories.member(person, factories.group(display_name="Payments"))
    return person


def connected(fake: FakeHarbor) -> Registry:
    return factories.registry(
        kind="harbor",
        name="harbor-eu",
        endpoint=fake.url,
        config={"username": fake.username},
        secrets={"password": fake.password},
    )


# --- search and history ------------------------------------------------------------------------------


def test_admins_find_people_by_name_or_e_mail(client: Client, admin: User, leaver: User) -> None:
    factories.user(username="someone-else")
    client.force_login(admin)

    page = body(client.get(INDEX, {"person": "corp.example"}))
    assert plan_url(leaver) in page
    assert "someone-else" not in page

    by_name = client.get(
        INDEX, {"person": "Lee Leav"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="people-results"
    )
    assert plan_url(leaver) in body(by_name)
    assert "<html" not in body(by_name)  # the fragment alone, for htmx
    assert "Nobody matches" in body(client.get(INDEX, {"person": "no-such-person"}))


def test_the_history_lists_offboardings_filtered_by_state(client: Client, admin: User, leaver: User) -> None:
    cancelled = offboarding.start(leaver, actor=admin, reason="mistake")
    offboarding.cancel(cancelled, actor=admin)
    other = factories.user(username="other-leaver")
    open_one = offboarding.start(other, actor=admin, reason="left")
    client.force_login(admin)

    page = body(client.get(INDEX))
    assert url("offboarding", cancelled) in page
    assert url("offboarding", open_one) in page

    only_cancelled = body(
        client.get(
            INDEX, {"state": "cancelled"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="offboarding-history"
        )
    )
    assert url("offboarding", cancelled) in only_cancelled
    assert url("offboarding", open_one) not in only_cancelled
    assert "<html" not in only_cancelled

    wrong = client.get(INDEX, {"state": "exploded"})
    assert wrong.status_code == 200
    assert "not one of the available choices" in body(wrong)


def test_the_history_costs_the_same_queries_with_more_rows(
    client: Client, admin: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def offboard(count: int) -> None:
        for _ in range(count):
            person = factories.user()
            factories.member(person, factories.group())
            offboarding.start(person, actor=admin, reason="left")

    client.force_login(admin)
    offboard(2)
    client.get(INDEX)  # warm the session and the role lookups
    with django_assert_num_queries(5) as few:  # session, user, role, count, page
        client.get(INDEX)
    offboard(12)
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(re.findall(r'href="/offboarding/\d+/"', body(client.get(INDEX)))) == 14


# --- the plan and starting it ------------------------------------------------------------------------


def test_the_plan_is_grouped_by_place_customs_first(client: Client, admin: User, leaver: User) -> None:
    zulu = factories.registry(name="zulu-registry")
    alpha = factories.registry(name="alpha-registry")
    factories.registry_credential(zulu, name="zulu-key", owner_user=leaver)
    factories.registry_credential(alpha, name="alpha-key", owner_user=leaver)
    client.force_login(admin)

    page = body(client.get(plan_url(leaver)))

    headings = re.findall(r"<h2 id=\"place-\d+\">([^<]+?) <", page)
    assert headings == ["Customs", "alpha-registry", "zulu-registry"]
    assert page.index("member of Payments") < page.index("alpha-key") < page.index("zulu-key")
    assert "left to a person" in page  # a distribution registry cannot disable credentials by API
    assert "Re-assigned, not removed" not in page
    assert not Offboarding.objects.exists()  # a dry run


def test_credentials_still_in_use_need_someone_to_take_them_over(
    client: Client, admin: User, leaver: User
) -> None:
    registry = factories.registry(name="builds")
    factories.registry_credential(registry, name="ci-robot", created_by_user=leaver, usage_known=False)
    heir = factories.user(username="heir")
    client.force_login(admin)

    page = body(client.get(plan_url(leaver)))
    assert "Re-assigned, not removed" in page
    assert "ci-robot" in page

    refused = client.post(plan_url(leaver), {"reason": "left"})
    assert refused.status_code == 200
    assert "choose who takes them over" in " ".join(refused.context["form"].errors["reassign_to"])
    unknown = client.post(plan_url(leaver), {"reason": "left", "reassign_to": "nobody-here"})
    assert "nobody has the username" in " ".join(unknown.context["form"].errors["reassign_to"])
    assert not Offboarding.objects.exists()

    started = client.post(plan_url(leaver), {"reason": "left", "reassign_to": "heir"})
    planned = Offboarding.objects.get(person=leaver)
    assert started["Location"] == url("offboarding", planned)
    assert planned.reassign_to == heir


def test_a_reason_is_required_and_nobody_offboards_themselves(client: Client, admin: User) -> None:
    client.force_login(admin)
    missing = client.post(plan_url(factories.user()), {"reason": ""})
    assert "reason" in missing.context["form"].errors
    yourself = client.post(plan_url(admin), {"reason": "testing"})
    assert yourself.status_code == 200
    assert "you cannot offboard yourself" in body(yourself)
    assert not Offboarding.objects.exists()


def test_a_second_start_while_one_is_open_shows_the_refusal(
    client: Client, admin: User, leaver: User
) -> None:
    first = offboarding.start(leaver, actor=admin, reason="left")
    client.force_login(admin)

    again = client.post(plan_url(leaver), {"reason": "again"})

    assert again.status_code == 200
    assert "already has an offboarding that has not finished" in body(again)
    assert url("offboarding", first) in body(again)  # and where the open one is
    assert Offboarding.objects.filter(person=leaver).count() == 1


def test_unknown_people_and_offboardings_are_not_found(client: Client, admin: User) -> None:
    client.force_login(admin)
    assert client.get(reverse("registries:offboarding_plan", kwargs={"user_id": 999_999})).status_code == 404
    assert client.get("/offboarding/people/abc/").status_code == 404
    for name in ("offboarding", "offboarding_progress", "offboarding_report", "offboarding_report_csv"):
        assert (
            client.get(reverse(f"registries:{name}", kwargs={"offboarding_id": 999_999})).status_code == 404
        )
    assert (
        client.post(reverse("registries:offboarding_confirm", kwargs={"offboarding_id": 999_999})).status_code
        == 404
    )


# --- start, confirm, watch -------------------------------------------------------------------------


def test_start_then_confirm_cuts_them_off_and_queues_the_run(
    client: Client,
    admin: User,
    leaver: User,
    queued: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(admin)
    detail = client.post(plan_url(leaver), {"reason": "left the company"}, follow=True)
    planned = Offboarding.objects.get(person=leaver)
    assert detail.redirect_chain == [(url("offboarding", planned), 302)]
    assert url("offboarding_confirm", planned) in body(detail)
    assert url("offboarding_cancel", planned) in body(detail)
    assert "member of Payments" in body(detail)  # the recorded plan
    assert User.objects.get(pk=leaver.pk).may_sign_in  # nothing changed yet

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = client.post(url("offboarding_confirm", planned), follow=True)

    planned.refresh_from_db()
    assert planned.state == Offboarding.State.RUNNING
    assert planned.pk in queued
    assert User.objects.get(pk=leaver.pk).status == User.Status.DEPARTED
    assert any("Confirmed" in message for message in messages_of(confirmed))
    assert url("offboarding_confirm", planned) not in body(confirmed)

    twice = client.post(url("offboarding_confirm", planned), follow=True)
    assert twice.status_code == 200
    assert messages_of(twice) == ["Not confirmed: this offboarding is running."]


def test_progress_is_polled_while_running_and_polling_stops_when_finished(
    client: Client, admin: User, leaver: User, queued: list[Any]
) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="left")
    client.force_login(admin)
    progress = url("offboarding_progress", planned)

    before = body(client.get(progress))
    assert "hx-trigger" not in before  # a plan does not change by itself
    offboarding.confirm(planned, actor=admin)

    running = body(client.get(progress))
    assert f'hx-get="{progress}"' in running
    assert 'hx-trigger="every 3s"' in running
    assert 'max="2" value="1"' in running  # the token went with the status change; the group is left
    assert f'hx-get="{progress}"' in body(client.get(url("offboarding", planned)))

    offboarding.run(planned)
    verifying = body(client.get(progress))
    assert 'hx-trigger="every 3s"' in verifying  # the worker re-reads the registries next
    offboarding.verify(Offboarding.objects.get(pk=planned.pk))

    finished = body(client.get(progress))
    assert "hx-trigger" not in finished
    assert 'max="2" value="2"' in finished
    assert "Completed" in finished


def test_a_plan_can_be_cancelled_once(client: Client, admin: User, leaver: User) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="wrong person")
    client.force_login(admin)

    cancelled = client.post(url("offboarding_cancel", planned), follow=True)

    planned.refresh_from_db()
    assert planned.state == Offboarding.State.CANCELLED
    assert any("cancelled" in message for message in messages_of(cancelled))
    assert User.objects.get(pk=leaver.pk).may_sign_in
    again = client.post(url("offboarding_cancel", planned), follow=True)
    assert again.status_code == 200
    assert "only a plan can be cancelled" in messages_of(again)[0]
    confirm = client.post(url("offboarding_confirm", planned), follow=True)
    assert messages_of(confirm) == ["Not confirmed: this offboarding is cancelled."]
    assert Offboarding.objects.get(pk=planned.pk).state == Offboarding.State.CANCELLED


def test_posts_need_the_csrf_token(admin: User, leaver: User) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="left")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(url("offboarding_confirm", planned)).status_code == 403
    assert client.post(plan_url(factories.user()), {"reason": "left"}).status_code == 403
    assert Offboarding.objects.get(pk=planned.pk).state == Offboarding.State.PLANNED


# --- the report ----------------------------------------------------------------------------------------


@pytest.fixture
def finished(harbor: FakeHarbor, admin: User, leaver: User, queued: list[Any]) -> Offboarding:
    """An offboarding whose Harbor step was refused (403), then found still present by verification."""
    registry = connected(harbor)
    robot_id = harbor.add_robot("deploy", access={"payments": ["pull"]})
    factories.registry_credential(registry, name="deploy-robot", native_id=str(robot_id), owner_user=leaver)
    harbor.forbidden.add("PUT /robots/{robot_id}")
    planned = offboarding.start(leaver, actor=admin, reason="left the company")
    offboarding.confirm(planned, actor=admin)
    done = offboarding.run(planned)
    # What verify() records after re-reading the registry (written separately; set as it leaves it).
    done.steps.filter(state=OffboardingStep.State.FAILED).update(
        verification=OffboardingStep.Verification.STILL_PRESENT, verification_note="robot still enabled"
    )
    return done


def test_the_report_shows_who_what_failed_and_verification(
    client: Client, reviewer: User, admin: User, finished: Offboarding
) -> None:
    assert finished.state == Offboarding.State.INCOMPLETE
    client.force_login(reviewer)

    page = body(client.get(url("offboarding_report", finished)))

    assert "left the company" in page
    assert page.count(admin.username) >= 2  # started and confirmed by
    failed = finished.steps.get(state=OffboardingStep.State.FAILED)
    assert "403" in failed.result
    problems = page.split('id="problems-heading"', 1)[1].split('id="steps-heading"', 1)[0]
    assert "deploy-robot" in problems
    assert failed.result in problems
    assert "robot still enabled" in problems
    for step in finished.steps.all():
        assert step.subject in page
    assert "offboarding.confirm" in page
    assert "offboarding.finish" in page
    assert url("offboarding_report_csv", finished) in page


def test_the_report_csv_has_a_header_and_a_row_per_step(
    client: Client, reviewer: User, finished: Offboarding
) -> None:
    client.force_login(reviewer)

    response = client.get(url("offboarding_report_csv", finished))

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert isinstance(response, StreamingHttpResponse)  # streamed, never built whole in memory
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[0] == list(offboarding_report.CSV_COLUMNS)
    assert len(lines) == 1 + finished.steps.count()
    states = {row[lines[0].index("state")] for row in lines[1:]}
    assert "failed" in states


def test_the_report_keeps_to_its_own_offboarding(client: Client, admin: User, leaver: User) -> None:
    first = offboarding.start(leaver, actor=admin, reason="first attempt")
    offboarding.cancel(first, actor=admin)
    second = offboarding.start(leaver, actor=admin, reason="second attempt")
    client.force_login(admin)

    report = body(client.get(url("offboarding_report", first)))

    assert "offboarding.cancel" in report
    assert "second attempt" not in report
    assert "second attempt" in body(client.get(url("offboarding_report", second)))


# --- who may do what -----------------------------------------------------------------------------------


def test_developers_get_nothing(client: Client, developer: User, admin: User, leaver: User) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="left")
    client.force_login(developer)
    for page in (INDEX, plan_url(leaver), url("offboarding", planned), url("offboarding_report", planned)):
        assert client.get(page).status_code == 403
    assert client.post(url("offboarding_cancel", planned)).status_code == 403
    assert Offboarding.objects.get(pk=planned.pk).state == Offboarding.State.PLANNED


def test_reviewers_read_but_change_nothing(client: Client, reviewer: User, admin: User, leaver: User) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="left")
    client.force_login(reviewer)

    index = body(client.get(INDEX, {"person": "leaver"}))
    assert url("offboarding", planned) in index
    assert "Offboard a person" not in index  # no search for them
    assert plan_url(leaver) not in index
    detail = client.get(url("offboarding", planned))
    assert detail.status_code == 200
    assert url("offboarding_confirm", planned) not in body(detail)
    plan = client.get(plan_url(leaver))
    assert plan.status_code == 200
    assert "member of Payments" in body(plan)
    assert 'name="reason"' not in body(plan)  # no form to start one
    assert client.post(plan_url(factories.user()), {"reason": "x"}).status_code == 403
    assert client.post(url("offboarding_confirm", planned)).status_code == 403
    assert client.post(url("offboarding_cancel", planned)).status_code == 403
    assert Offboarding.objects.get(pk=planned.pk).state == Offboarding.State.PLANNED
    assert User.objects.get(pk=leaver.pk).may_sign_in


def test_a_verification_that_never_comes_stops_the_polling(
    client: Client, admin: User, leaver: User, queued: list[Any]
) -> None:
    planned = offboarding.start(leaver, actor=admin, reason="left")
    offboarding.confirm(planned, actor=admin)
    offboarding.run(planned)
    client.force_login(admin)
    progress = url("offboarding_progress", planned)
    assert 'hx-trigger="every 3s"' in body(client.get(progress))

    # The worker died before verifying: after a while the page stops asking.
    Offboarding.objects.filter(pk=planned.pk).update(finished_at=timezone.now() - timedelta(minutes=11))
    assert "hx-trigger" not in body(client.get(progress))
