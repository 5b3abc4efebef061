"""Rate limits met by a sync, through the real pipeline (sync.sync_inventory, tasks.sync_registry).

A short wait (Retry-After up to sync.MAX_RETRY_AFTER) is waited out where it happened and the same
request sent again, so a listing goes on from its page: the pages before it are not read twice. A
longer one ends the run saying so, and the task is queued again for the moment the registry named.
Every sleep here is injected: no test waits for real.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import botocore.endpoint
import pytest
from django.utils import timezone

from registries import services, sync, tasks
from registries.connectors.errors import TransientError
from registries.demo import images as im
from registries.models import Registry, Repository, SyncRun
from tests.fakes.acr import FakeAcr
from tests.fakes.aws import (
    AwsRequests,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    aws_requests_fixture,  # noqa: F401
    client,
    ecr_public,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
)
from tests.fakes.dockerhub import FakeDockerHub, OrgToken
from tests.fakes.server import Answer, Request
from tests.registries.harness import RunningRegistry
from tests.registries.test_sync_faults import (
    URL,
    FakeRegistry,
    fake_fixture,  # noqa: F401  (three repositories over two catalog pages, at URL)
)

pytestmark = pytest.mark.django_db

FIRST_PAGE, SECOND_PAGE = "GET /v2/_catalog?n=2", "GET /v2/_catalog?last=a%2Ftwo&n=2"
THROTTLED = (429, {"Retry-After": "5"}, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')


def paged(name: str = "paged") -> Registry:
    registry = Registry(name=name, kind="distribution", endpoint=URL)
    return services.save_registry(registry, actor=None, public={"page_size": 2})


class Waits:
    """The sleep handed to the sync: records each wait and what the run said during it."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.seconds: list[float] = []
        self.notes: list[str] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.notes.append(SyncRun.objects.get(registry=self.registry, status=SyncRun.Status.RUNNING).error)


# --- a short wait: waited out on the page it happened on -----------------------------------------------


def test_a_429_half_way_through_the_catalog_is_waited_out_and_the_listing_goes_on_from_its_page(
    fake: FakeRegistry,
) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [THROTTLED]
    waits = Waits(registry)
    run = sync.sync_inventory(registry, sleep=waits)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert waits.seconds == [5.0]
    assert waits.notes == ["waiting 5 s for paged (rate limited)"]  # on the registry page, while it waits
    assert run.error == ""
    assert fake.hits[FIRST_PAGE] == 1  # the page before the 429 is not read again
    assert fake.hits[SECOND_PAGE] == 2  # the 429, then the same page once more
    listed = {key: hits for key, hits in fake.hits.items() if key.endswith("/tags/list")}
    assert listed == {f"GET /v2/a/{n}/tags/list": 1 for n in ("one", "two", "three")}
    assert sorted(Repository.objects.filter(registry=registry).values_list("name", flat=True)) == [
        "a/one",
        "a/three",
        "a/two",
    ]


def test_without_a_retry_after_the_waits_double(fake: FakeRegistry) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(429, {}, b""), (429, {}, b"")]
    waits = Waits(registry)
    assert sync.sync_inventory(registry, sleep=waits).status == SyncRun.Status.SUCCEEDED
    assert waits.seconds == [1.0, 2.0]
    assert fake.hits[FIRST_PAGE] == 1


def test_a_retry_after_given_as_a_date_is_waited_until_then(fake: FakeRegistry) -> None:
    registry = paged()
    then = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    fake.queued[SECOND_PAGE] = [(429, {"Retry-After": then}, b"")]
    waits = Waits(registry)
    assert sync.sync_inventory(registry, sleep=waits).status == SyncRun.Status.SUCCEEDED
    [seconds] = waits.seconds
    assert 28 < seconds <= 30


def test_a_registry_that_keeps_refusing_ends_the_run_after_a_few_waits(fake: FakeRegistry) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [THROTTLED] * sync.RATE_LIMIT_ATTEMPTS
    waits = Waits(registry)
    run = sync.sync_inventory(registry, sleep=waits)
    assert run.status == SyncRun.Status.FAILED
    assert waits.seconds == [5.0] * (sync.RATE_LIMIT_ATTEMPTS - 1)
    assert fake.hits[SECOND_PAGE] == sync.RATE_LIMIT_ATTEMPTS
    assert run.error.startswith("rate limited by paged: 429 from https://faulty.registry.test/v2/_catalog")
    assert run.error.endswith("it asks to wait 5 s")
    assert not Repository.objects.filter(registry=registry).exists()  # nothing applied from half a listing


# --- a long wait: the run ends, and the task comes back when the registry asked ---------------------------


def test_a_long_retry_after_ends_the_run_without_waiting_and_says_when_it_is_tried_again(
    fake: FakeRegistry,
) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(429, {"Retry-After": "600"}, b"")]
    waits = Waits(registry)
    with pytest.raises(sync.Deferred) as deferred:
        sync.sync_inventory(registry, sleep=waits, resume_within=3600)
    assert waits.seconds == []
    run = deferred.value.run
    assert (run.status, deferred.value.retry_after) == (SyncRun.Status.FAILED, 600.0)
    assert "it asks to wait 600 s; Customs tries again at " in run.error
    assert run.error.endswith("UTC (in 600 s)")
    assert Registry.objects.get(pk=registry.pk).syncing_since is None  # released for the next attempt


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the sync task asked of Celery: its re-queues (the real retry, recorded) and follow-ups."""
    asked: dict[str, list[Any]] = {"retry": [], "findings": []}
    retry = tasks.sync_registry.retry

    def recorded_retry(**options: Any) -> Any:
        asked["retry"].append(options)
        return retry(**options)

    monkeypatch.setattr(tasks.sync_registry, "retry", recorded_retry)
    monkeypatch.setattr(tasks.scan_findings, "delay", asked["findings"].append)
    monkeypatch.setattr(tasks.refresh_lineage, "delay", lambda registry_id: None)
    return asked


def test_the_sync_task_is_queued_again_for_when_the_registry_asked_and_then_completes(
    fake: FakeRegistry, queued: dict[str, list[Any]]
) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(429, {"Retry-After": "600"}, b"")]
    # apply() runs a retry at once (eager), where a worker would hold it until its countdown.
    tasks.sync_registry.apply(args=[registry.pk]).get()
    assert queued["retry"] == [{"countdown": 600.0, "max_retries": tasks.RATE_LIMIT_REQUEUES}]
    first, second = SyncRun.objects.filter(registry=registry).order_by("started_at")
    assert first.status == SyncRun.Status.FAILED
    assert "Customs tries again at" in first.error
    assert second.status == SyncRun.Status.SUCCEEDED, second.error
    assert second.repositories_seen == 3
    assert queued["findings"] == [registry.pk]  # findings follow the run that read the registry


def test_an_outage_is_retried_with_the_tasks_back_off_rather_than_at_the_next_schedule(
    fake: FakeRegistry, queued: dict[str, list[Any]]
) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(503, {}, b"")]

    tasks.sync_registry.apply(args=[registry.pk]).get()

    [retried] = queued["retry"]
    assert isinstance(retried["exc"], TransientError)
    first, second = SyncRun.objects.filter(registry=registry).order_by("started_at")
    assert first.status == SyncRun.Status.FAILED
    assert first.error.endswith("; Customs tries again shortly")
    assert "503" in first.error
    assert (second.status, second.repositories_seen) == (SyncRun.Status.SUCCEEDED, 3)
    assert queued["findings"] == [registry.pk]


def test_a_sync_run_by_hand_reports_an_outage_and_returns(fake: FakeRegistry) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(503, {}, b"")]
    run = sync.sync_inventory(registry)  # nobody will come back: no retry promised
    assert run.status == SyncRun.Status.FAILED
    assert "tries again" not in run.error


def test_the_sync_task_gives_up_re_queueing_after_a_few_times(
    fake: FakeRegistry, queued: dict[str, list[Any]]
) -> None:
    registry = paged()
    fake.answers[SECOND_PAGE] = (429, {"Retry-After": "600"}, b"")
    tasks.sync_registry.apply(args=[registry.pk]).get()
    assert [options["countdown"] for options in queued["retry"]] == [600.0] * tasks.RATE_LIMIT_REQUEUES
    runs = list(SyncRun.objects.filter(registry=registry).order_by("started_at"))
    assert len(runs) == tasks.RATE_LIMIT_REQUEUES + 1
    assert {run.status for run in runs} == {SyncRun.Status.FAILED}
    assert runs[-1].error.endswith("it asks to wait 600 s")  # the schedule takes it from here
    assert queued["findings"] == []


def test_a_wait_beyond_what_a_queued_task_may_hold_is_left_to_the_schedule(
    fake: FakeRegistry, queued: dict[str, list[Any]]
) -> None:
    registry = paged()
    fake.queued[SECOND_PAGE] = [(429, {"Retry-After": str(int(tasks.LONGEST_REQUEUE) + 1)}, b"")]
    tasks.sync_registry.apply(args=[registry.pk]).get()
    assert queued["retry"] == []
    run = SyncRun.objects.get(registry=registry)
    assert run.status == SyncRun.Status.FAILED
    assert "Customs tries again" not in run.error


# --- vendors: Docker Hub's epoch, ACR's data plane, ECR through botocore ----------------------------------


class PageFaults:
    """Wraps a fake's router: records (path, page) of each answer and answers chosen pages with 429 once."""

    def __init__(self, route: Callable[[Request], Answer], page: Callable[[Request], str]) -> None:
        self.route, self.page = route, page
        self.seen: list[tuple[str, str]] = []
        self.faults: dict[tuple[str, str], list[Answer]] = {}

    def __call__(self, request: Request) -> Answer:
        key = (request.path, self.page(request))
        self.seen.append(key)
        pending = self.faults.get(key)
        return pending.pop(0) if pending else self.route(request)

    def count(self, path: str) -> dict[str, int]:
        pages: dict[str, int] = {}
        for seen, page in self.seen:
            if seen == path:
                pages[page] = pages.get(page, 0) + 1
        return pages


@pytest.fixture
def hub(
    registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeDockerHub, PageFaults]]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    faults = PageFaults(fake.api, lambda request: request.query.get("page", ["1"])[0])
    monkeypatch.setattr(fake, "api", faults)
    pusher = registry.pusher()
    for name in ("acme/app", "acme/tools", "acme/worker"):
        pusher.push_image(name, im.base_image(name.replace("/", "-")), tags=["1"])
    yield fake, faults
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


def saved_hub(fake: FakeDockerHub) -> Registry:
    public = {"registry_url": fake.url, "namespace": "acme", "username": fake.username, "page_size": 1}
    registry = Registry(name="hub-acme", kind="dockerhub", endpoint=fake.url)
    return services.save_registry(registry, actor=None, public=public, secrets={"token": fake.token})


def test_docker_hubs_epoch_retry_hint_is_waited_out_mid_listing(
    hub: tuple[FakeDockerHub, PageFaults],
) -> None:
    fake, faults = hub
    registry = saved_hub(fake)
    listing = "/v2/namespaces/acme/repositories"
    come_back = str(int(time.time()) + 20)
    faults.faults[listing, "2"] = [
        Answer(429, {"detail": "Rate limit exceeded"}, {"X-Retry-After": come_back})
    ]
    waits = Waits(registry)
    run = sync.sync_inventory(registry, sleep=waits)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    [seconds] = waits.seconds
    assert 18 < seconds <= 20
    # Each read of the listing (inventory, and grants after it) asks for each page once; the 429
    # costs one request more, on its own page.
    pages = faults.count(listing)
    assert pages["2"] == pages["1"] + 1 == pages["3"] + 1
    assert run.repositories_seen == 3


def test_a_429_half_way_through_a_credential_listing_does_not_restart_it(
    hub: tuple[FakeDockerHub, PageFaults],
) -> None:
    fake, faults = hub
    moment = timezone.now()
    fake.org_tokens += [
        OrgToken(label=f"ci-{n}", created_by=fake.username, created_at=moment, resources=[]) for n in range(3)
    ]
    registry = saved_hub(fake)
    tokens = "/v2/orgs/acme/access-tokens"
    faults.faults[tokens, "2"] = [Answer(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "3"})]
    waits = Waits(registry)
    run = sync.sync_inventory(registry, sleep=waits)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert waits.seconds == [3.0]
    assert run.not_read == {}
    assert run.credentials_seen is not None
    assert run.credentials_seen >= 3
    first_read = faults.count(tokens)
    assert first_read["2"] == first_read["1"] + 1  # page 2 once more; page 1 not read again


def test_a_part_refused_for_long_is_read_by_the_sync_the_task_queues_again(
    hub: tuple[FakeDockerHub, PageFaults], queued: dict[str, list[Any]]
) -> None:
    fake, faults = hub
    fake.org_tokens += [
        OrgToken(label="ci", created_by=fake.username, created_at=timezone.now(), resources=[])
    ]
    registry = saved_hub(fake)
    # Grants are read first, and the organisation's tokens are among them (what each may reach).
    tokens = "/v2/orgs/acme/access-tokens"
    faults.faults[tokens, "1"] = [Answer(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "600"})]

    tasks.sync_registry.apply(args=[registry.pk]).get()

    assert queued["retry"] == [{"countdown": 600.0, "max_retries": tasks.RATE_LIMIT_REQUEUES}]
    first, second = SyncRun.objects.filter(registry=registry).order_by("started_at")
    # The inventory and the other parts applied at once; only the grants waited for the queued sync.
    assert (first.status, first.repositories_seen, first.grants_seen) == (SyncRun.Status.SUCCEEDED, 3, None)
    assert list(first.not_read) == ["grants"]
    assert first.not_read["grants"].endswith("it asks to wait 600 s")
    assert first.credentials_seen is not None
    assert second.status == SyncRun.Status.SUCCEEDED, second.error
    assert second.not_read == {}
    assert second.grants_seen is not None
    assert queued["findings"] == [registry.pk]  # once, after the sync that read everything


def test_acr_throttling_on_a_catalog_page_is_waited_out_as_asked(
    registry: RunningRegistry, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaces a test that wrapped repositories() in the sync's old retry helper itself: the sync
    never did that, so one 429 on a catalog page failed every real ACR sync."""
    fake = FakeAcr(registry_url=registry.url).start()
    try:
        settings.OUTBOUND_CA_BUNDLE = fake.ca_bundle
        pusher = registry.pusher()
        for name in ("library/debian", "payments/api", "payments/worker"):
            pusher.push_image(name, im.base_image(name.replace("/", "-")), tags=["1"])
        faults = PageFaults(fake._data_plane, lambda request: request.query.get("last", [""])[0])
        monkeypatch.setattr(fake, "_data_plane", faults)
        throttled = {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]}
        faults.faults["/acr/v1/_catalog", "payments/api"] = [
            Answer(429, throttled, {"Retry-After": "2"}),
            Answer(429, throttled, {"Retry-After": "1"}),
        ]
        public = fake.public_config(page_size=2)
        saved = services.save_registry(
            Registry(name="acr", kind="acr", endpoint=public.pop("url")),
            actor=None,
            public=public,
            secrets={"client_secret": fake.client_secret},
        )
        waits = Waits(saved)
        run = sync.sync_inventory(saved, sleep=waits)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert waits.seconds == [2.0, 1.0]
        assert faults.count("/acr/v1/_catalog") == {"": 1, "payments/api": 3}
        assert run.repositories_seen == 3
    finally:
        fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


def test_a_throttled_iam_page_is_sent_again_by_botocore_and_the_grant_read_goes_on(
    moto: str, aws_requests: AwsRequests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECR and IAM go through boto3, whose standard retry mode sends a throttled page again (moto
    pages IAM's attached policies, not ECR's listings)."""
    client("ecr", moto).create_repository(repositoryName="a/one")
    iam = client("iam", moto)
    iam.create_group(GroupName="devs")
    pull = {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}
    for n in range(3):
        document = json.dumps({"Version": "2012-10-17", "Statement": [pull]})
        arn = iam.create_policy(PolicyName=f"pull-{n}", PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_group_policy(GroupName="devs", PolicyArn=arn)
    public = ecr_public(moto, page_size=1, max_attempts=3)
    saved = services.save_registry(
        Registry(name="ecr", kind="ecr", endpoint="http://127.0.0.1:9"),
        actor=None,
        public=public,
        secrets={"secret_access_key": "testing"},
    )
    backoffs: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=backoffs.append))
    aws_requests.throttle.append(
        lambda sent: sent.operation == "ListAttachedGroupPolicies" and "Marker" in sent.params
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.not_read == {}
    assert len(backoffs) == 1  # botocore's own back-off, before sending the page again
    markers = [params.get("Marker") for params in aws_requests.of("ListAttachedGroupPolicies")]
    assert markers[0] is None
    assert markers[1] is not None
    assert markers[1] == markers[2]  # the throttled page, sent twice
    assert None not in markers[1:]  # never back to the first page
    assert len(set(markers[2:])) == len(markers[2:])  # every later page once
    assert run.grants_seen == 3  # the group, once per policy
