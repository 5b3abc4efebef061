"""Access review pages: starting a campaign, its items with filters and bulk decisions, "my reviews",
closing with the plan shown first, the report as HTML, CSV and PDF, and who may do what."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import DirectoryGroup, GroupMembership, Source, User
from accounts.roles import Role
from registries import review_tasks, reviews
from registries.models import AccessReviewCampaign, AccessReviewItem, AccessRule, Registry
from tests import factories
from tests.portal.test_pdf import pdf_text

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

Campaign = AccessReviewCampaign
Item = AccessReviewItem
LIST = reverse("registries:reviews")
ADD = reverse("registries:review_add")
MINE = reverse("registries:my_reviews")


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(review_tasks.apply_campaign, "delay", ids.append)
    return ids


def url(name: str, campaign: Campaign) -> str:
    return reverse(f"registries:{name}", kwargs={"campaign_id": campaign.pk})


def body(response: Response) -> str:
    return response.content.decode()


def messages_of(response: Response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def prod() -> Registry:
    return factories.registry(name=factories.unique("prod"))


@pytest.fixture
def deploy(prod: Registry, developer: User) -> DirectoryGroup:
    """Three pushers to prod/**, whose group the developer owns (and so reviews)."""
    group = factories.group(display_name=factories.unique("Deploy"), owner=developer)
    factories.access_rule(group, "prod/**", "push", registry=prod)
    for name in ("anna", "ben", "cleo"):
        GroupMembership.objects.create(
            user=factories.user(username=factories.unique(name)), group=group, source=Source.LOCAL
        )
    return group


def start(owner: User | None, prod: Registry, **fields: Any) -> Campaign:
    fields.setdefault("name", factories.unique("Prod pushers"))
    fields.setdefault("pattern", "prod/**")
    fields.setdefault("actions", frozenset({"push"}))
    fields.setdefault("due_at", timezone.now() + timedelta(days=7))
    return reviews.create_campaign(reviews.CampaignRequest(registries=(prod,), **fields), actor=owner)


@pytest.fixture
def open_campaign(reviewer: User, prod: Registry, deploy: DirectoryGroup) -> Campaign:
    """Owned by the reviewer; the developer reviews its three items as the group's owner."""
    return start(reviewer, prod)


def form_data(prod: Registry, **fields: Any) -> dict[str, Any]:
    due = timezone.localtime(timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "name": "Who can push to prod",
        "registries": [prod.pk],
        "pattern": "prod/**",
        "actions": ["push"],
        "reviewer_rule": "group_owner",
        "reviewers": "",
        "due_at": due,
        "default_decision": "revoke",
        "recurrence": "quarterly",
        "start_at": "",
    }
    return data | fields


# --- starting a campaign ---------------------------------------------------------------------------------


def test_a_reviewer_starts_a_campaign_and_its_items_are_built(
    client: Client, reviewer: User, prod: Registry, deploy: DirectoryGroup
) -> None:
    client.force_login(reviewer)
    assert client.get(ADD).status_code == 200

    response = client.post(ADD, form_data(prod))

    found = Campaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("review", found)
    assert (found.owner, found.state, found.default_decision, found.recurrence) == (
        reviewer,
        Campaign.State.OPEN,
        "revoke",
        "quarterly",
    )
    assert found.items.count() == 3


def test_the_form_refuses_a_broken_pattern_and_unknown_reviewers(
    client: Client, reviewer: User, prod: Registry
) -> None:
    client.force_login(reviewer)

    response = client.post(ADD, form_data(prod, pattern="Prod/**", reviewers="nobody-here"))

    assert response.status_code == 200
    assert "lowercase" in body(response)
    assert "nobody has the username nobody-here" in body(response)
    assert not Campaign.objects.exists()


def test_a_service_refusal_comes_back_on_the_form(client: Client, reviewer: User, prod: Registry) -> None:
    client.force_login(reviewer)
    due = timezone.localtime(timezone.now() + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M")

    response = client.post(ADD, form_data(prod, due_at=due, recurrence="monthly"))

    assert response.status_code == 200
    assert "a recurring campaign must be due before its next one starts" in body(response)


def test_developers_cannot_start_campaigns(client: Client, developer: User, prod: Registry) -> None:
    client.force_login(developer)
    assert client.post(ADD, form_data(prod)).status_code == 403
    assert not Campaign.objects.exists()


# --- seeing campaigns and items ----------------------------------------------------------------------------


def test_a_developer_sees_the_campaigns_they_review_and_nobody_else_does(
    client: Client, open_campaign: Campaign, developer: User
) -> None:
    outsider = factories.user_with_role(Role.DEVELOPER)
    client.force_login(developer)
    assert open_campaign.name in body(client.get(LIST))
    assert client.get(url("review", open_campaign)).status_code == 200

    client.force_login(outsider)
    assert open_campaign.name not in body(client.get(LIST))
    assert client.get(url("review", open_campaign)).status_code == 404
    assert client.get(url("review_report", open_campaign)).status_code == 404


def test_a_developer_sees_only_the_items_they_review(
    client: Client, reviewer: User, prod: Registry, deploy: DirectoryGroup, developer: User
) -> None:
    elsewhere = factories.group(display_name=factories.unique("Ops"))
    factories.access_rule(elsewhere, "**", "push")
    outside = factories.user(username=factories.unique("olaf"))
    GroupMembership.objects.create(user=outside, group=elsewhere, source=Source.SCIM)
    found = start(reviewer, prod)

    client.force_login(developer)
    page = body(client.get(url("review", found)))
    assert page.count('name="item"') == 3
    assert outside.username not in page
    client.force_login(reviewer)
    assert outside.username in body(client.get(url("review", found)))


def test_filters_narrow_the_items(client: Client, reviewer: User, open_campaign: Campaign) -> None:
    first = open_campaign.items.order_by("subject").first()
    assert first is not None
    reviews.decide(open_campaign, [first.pk], decision="certify", comment="", actor=reviewer)
    client.force_login(reviewer)

    undecided = client.get(url("review", open_campaign), {"decision": "undecided"})
    certified = client.get(url("review", open_campaign), {"decision": "certify", "action": "push"})
    pulling = client.get(url("review", open_campaign), {"action": "pull"})

    assert [row.item for row in undecided.context["rows"]] == list(
        open_campaign.items.exclude(pk=first.pk).order_by("subject")
    )
    assert [row.item for row in certified.context["rows"]] == [first]
    assert pulling.context["rows"] == []


def test_the_item_list_costs_the_same_queries_with_more_items(
    client: Client,
    reviewer: User,
    prod: Registry,
    deploy: DirectoryGroup,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    few = start(reviewer, prod)
    for _ in range(20):
        GroupMembership.objects.create(user=factories.user(), group=deploy, source=Source.SCIM)
    many = start(reviewer, prod)
    client.force_login(reviewer)
    client.get(url("review", few))  # warm the session and the role lookups
    # session, user, role, campaign, registries, summary, count, page, reviewers
    with django_assert_num_queries(9) as counted:
        client.get(url("review", few))
    with django_assert_num_queries(len(counted.captured_queries)):
        assert body(client.get(url("review", many))).count('name="item"') == 23


# --- deciding --------------------------------------------------------------------------------------------


def test_ticked_items_are_decided_and_others_left_alone(
    client: Client, developer: User, open_campaign: Campaign
) -> None:
    first, second, third = open_campaign.items.order_by("subject")
    client.force_login(developer)

    response = client.post(
        url("review_decide", open_campaign),
        {"item": [first.pk, second.pk], "decision": "revoke", "comment": "left the team"},
    )

    assert response.status_code == 302
    decided = dict(open_campaign.items.values_list("pk", "decision"))
    assert decided == {first.pk: "revoke", second.pk: "revoke", third.pk: ""}
    assert Item.objects.get(pk=first.pk).decided_by == developer


def test_every_item_the_filter_shows_is_decided_at_once(
    client: Client, developer: User, open_campaign: Campaign
) -> None:
    first = open_campaign.items.order_by("subject").first()
    assert first is not None
    client.force_login(developer)

    response = client.post(
        url("review_decide", open_campaign),
        {"everything": "on", "query": f"search={first.subject[:5]}", "decision": "certify", "comment": ""},
        follow=True,
    )

    assert messages_of(response) == ["Certified 1 item."]
    assert list(open_campaign.items.exclude(decision="").values_list("pk", flat=True)) == [first.pk]


def test_a_revocation_without_a_comment_is_refused(
    client: Client, developer: User, open_campaign: Campaign
) -> None:
    item = open_campaign.items.first()
    assert item is not None
    client.force_login(developer)

    response = client.post(
        url("review_decide", open_campaign), {"item": [item.pk], "decision": "revoke"}, follow=True
    )

    assert "say why the access should go" in messages_of(response)[0]
    assert open_campaign.items.undecided().count() == 3


def test_someone_named_but_reviewing_nothing_may_not_decide(
    client: Client, reviewer: User, prod: Registry, deploy: DirectoryGroup
) -> None:
    named = factories.user()
    found = start(reviewer, prod, reviewers=(named,))  # a fallback nobody needed
    item = found.items.first()
    assert item is not None
    client.force_login(named)
    assert client.get(url("review", found)).status_code == 200

    response = client.post(url("review_decide", found), {"item": [item.pk], "decision": "certify"})

    assert response.status_code == 403


def test_my_reviews_lists_what_waits_and_decides_from_there(
    client: Client, developer: User, open_campaign: Campaign
) -> None:
    client.force_login(developer)
    page = client.get(MINE)
    (group,) = page.context["groups"]
    assert (group[0], len(group[1]), group[2]) == (open_campaign, 3, 3)
    item = group[1][0].item

    response = client.post(
        url("review_decide", open_campaign), {"item": [item.pk], "decision": "certify", "next": MINE}
    )

    assert response["Location"] == MINE
    assert client.get(MINE).context["groups"][0][2] == 2


# --- closing and the report --------------------------------------------------------------------------------


def test_the_close_page_shows_the_plan_and_changes_nothing(
    client: Client, admin: User, reviewer: User, prod: Registry, deploy: DirectoryGroup
) -> None:
    found = start(reviewer, prod, default_decision="revoke")
    client.force_login(admin)

    page = client.get(url("review_close", found))

    assert page.status_code == 200
    assert len(page.context["planned"]) == 3
    assert "everyone it reaches was revoked" in body(page)  # all three revoked: the rule would end
    assert found.items.undecided().count() == 3
    assert AccessRule.objects.get(group=deploy).expires_at is None


def test_the_owner_closes_and_the_plan_is_applied(
    client: Client,
    reviewer: User,
    open_campaign: Campaign,
    deploy: DirectoryGroup,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    first = open_campaign.items.order_by("subject").first()
    assert first is not None
    assert first.person is not None
    reviews.decide(open_campaign, [first.pk], decision="revoke", comment="left", actor=reviewer)
    client.force_login(reviewer)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("review_close", open_campaign))

    assert response.status_code == 302
    assert queued == [open_campaign.pk]
    open_campaign.refresh_from_db()
    assert (open_campaign.state, open_campaign.closed_by) == (Campaign.State.CLOSED, reviewer)
    reviews.apply(open_campaign)
    assert not GroupMembership.objects.filter(user=first.person, group=deploy).exists()
    again = client.post(url("review_close", open_campaign), follow=True)
    assert messages_of(again)[-1] == "Not closed: this campaign is applied: only an open one closes."


def test_only_admins_and_the_owner_close(
    client: Client, admin: User, open_campaign: Campaign, developer: User
) -> None:
    another_reviewer = factories.user_with_role(Role.REVIEWER)
    client.force_login(another_reviewer)
    assert client.post(url("review_close", open_campaign)).status_code == 403
    client.force_login(developer)
    assert client.post(url("review_close", open_campaign)).status_code == 403
    client.force_login(admin)
    assert client.post(url("review_close", open_campaign)).status_code == 302


def test_a_scheduled_draft_can_be_opened_early(
    client: Client, admin: User, prod: Registry, deploy: DirectoryGroup
) -> None:
    begins = timezone.now() + timedelta(days=3)
    found = start(admin, prod, start_at=begins, due_at=begins + timedelta(days=7))
    client.force_login(admin)

    response = client.post(url("review_open", found), follow=True)

    assert messages_of(response) == ["Campaign opened with 3 items to review."]


def test_applying_again_is_for_closed_campaigns(
    client: Client, admin: User, open_campaign: Campaign, queued: list[int]
) -> None:
    client.force_login(admin)
    assert (
        "Only a closed campaign"
        in messages_of(client.post(url("review_apply", open_campaign), follow=True))[0]
    )
    reviews.close(open_campaign, actor=admin)

    client.post(url("review_apply", open_campaign))

    assert queued == [open_campaign.pk]


@pytest.fixture
def closed(reviewer: User, open_campaign: Campaign) -> Campaign:
    first = open_campaign.items.order_by("subject").first()
    assert first is not None
    reviews.decide(open_campaign, [first.pk], decision="revoke", comment="left the team", actor=reviewer)
    return reviews.apply(reviews.close(open_campaign, actor=reviewer))


def test_the_report_page_lists_every_item_and_the_trail(
    client: Client, reviewer: User, closed: Campaign
) -> None:
    client.force_login(reviewer)

    page = body(client.get(url("review_report", closed)))

    for item in closed.items.all():
        assert item.subject in page
    assert "left the team" in page
    assert "(default)" in page
    assert "access_review.close" in page


def test_the_csv_report_has_a_row_per_item(client: Client, reviewer: User, closed: Campaign) -> None:
    client.force_login(reviewer)

    response = client.get(url("review_report_csv", closed))

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"] == f'attachment; filename="customs-access-review-{closed.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["subject"] for row in rows] == list(
        closed.items.order_by("subject").values_list("subject", flat=True)
    )
    assert sorted(row["outcome"] for row in rows) == ["kept", "kept", "revoked"]


def test_the_pdf_report_names_the_campaign_and_every_result(
    client: Client, reviewer: User, closed: Campaign, tmp_path: Path
) -> None:
    client.force_login(reviewer)

    response = client.get(url("review_report_pdf", closed))

    assert response["Content-Type"] == "application/pdf"
    text = " ".join(pdf_text(response.content, tmp_path).split())
    assert f"Access review: {closed.name}" in text
    # Cells wrap, so whole subjects may be split across lines; the results and reviewers are not.
    assert text.count("developer-") >= 3  # the reviewer of each item
    assert text.count(" kept ") == 2
    assert "Remove from the group: removed" in text
    assert "3 items: 2 certified, 1 revoked, 2 by the default, 0 undecided." in text


def test_the_people_asked_to_review_do_not_read_the_report(
    client: Client, developer: User, closed: Campaign
) -> None:
    client.force_login(developer)
    for name in ("review_report", "review_report_csv", "review_report_pdf"):
        assert client.get(url(name, closed)).status_code == 403
