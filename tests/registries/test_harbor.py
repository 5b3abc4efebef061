"""The Harbor connector against a fake Harbor REST API over a real docker-registry (tests/fakes/harbor.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from registries import connectors, services, sync
from registries.connectors.errors import AuthError, ConfigError, RateLimited, TransientError
from registries.connectors.harbor import HarborConnector
from registries.demo import images as im
from registries.models import Artifact, Registry, Repository, SyncRun, Tag
from tests.fakes.harbor import FakeHarbor
from tests.fakes.server import Answer
from tests.registries.harness import RunningRegistry

PUSHED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
PULLED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def connector(fake: FakeHarbor, **public: Any) -> HarborConnector:
    built = connectors.build(
        "harbor", {"url": fake.url, "username": fake.username, **public}, {"password": fake.password}
    )
    assert isinstance(built, HarborConnector)
    return built


def seed(registry: RunningRegistry) -> dict[str, im.Image]:
    pusher = registry.pusher()
    base = im.base_image("debian", version="12")
    app = im.child_image(base, {"app/main.py": b"print('hi')\n"}, base_name="docker.io/library/debian:12")
    pusher.push_image("library/debian", base, tags=["12"])
    pusher.push_image("payments/api", app, tags=["1.0", "latest"])
    pusher.push_image("payments/batch/worker", base, tags=["1"])  # a nested name: encoded twice
    return {"base": base, "app": app}


def test_repositories_tags_and_times_come_from_harbor(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    images = seed(registry)
    harbor.push_times[images["app"].digest] = PUSHED
    harbor.pull_times[images["app"].digest] = PULLED
    harbor_connector = connector(harbor, page_size=2)

    names = [repository.name for repository in harbor_connector.repositories()]
    assert names == ["library/debian", "payments/api", "payments/batch/worker"]  # three items over two pages
    tags = harbor_connector.tags("payments/api")
    assert [(tag.name, tag.digest) for tag in tags] == [
        ("1.0", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    nested = harbor_connector.tags("payments/batch/worker")
    assert [tag.digest for tag in nested] == [images["base"].digest]
    # The server decodes the path once, as Harbor's does: what remains is still encoded, so it is one segment.
    assert any("payments/repositories/batch%2Fworker/artifacts" in seen for seen in harbor.requests_seen)

    artifact = harbor_connector.artifact("payments/api", images["app"].digest)
    assert (artifact.pushed_at, artifact.last_pulled_at) == (PUSHED, PULLED)
    assert artifact.layer_digests == tuple(layer.digest for layer in images["app"].layers)  # from /v2/
    never_pulled = harbor_connector.artifact("library/debian", images["base"].digest)
    assert never_pulled.last_pulled_at is None  # Harbor's year-1 "never"


@pytest.mark.django_db
def test_a_sync_through_the_real_pipeline_records_harbor_times(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    images = seed(registry)
    harbor.push_times[images["app"].digest] = PUSHED
    harbor.pull_times[images["app"].digest] = PULLED
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert set(Repository.objects.filter(registry=saved).values_list("name", flat=True)) == {
        "library/debian",
        "payments/api",
        "payments/batch/worker",
    }
    app = Artifact.objects.get(repository__registry=saved, repository__name="payments/api")
    assert (app.pushed_at, app.last_pulled_at) == (PUSHED, PULLED)
    assert sorted(Tag.objects.filter(artifact=app).values_list("name", flat=True)) == ["1.0", "latest"]


def test_wrong_credentials_are_an_auth_error(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    built = connectors.build(
        "harbor", {"url": harbor.url, "username": harbor.username}, {"password": "wrong"}
    )
    with pytest.raises(AuthError, match="401 from .*/api/v2.0/projects"):
        built.check()


def test_check_passes_with_good_credentials_on_both_apis(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    connector(harbor).check()
    assert (
        "GET /service/token" in harbor.requests_seen
    )  # the registry side was reached through Harbor's token service


def test_throttling_says_when_to_come_back(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    seed(registry)
    harbor.fail_next.append(
        Answer(429, {"errors": [{"code": "TOO_MANY", "message": "slow down"}]}, headers={"Retry-After": "7"})
    )
    with pytest.raises(RateLimited) as raised:
        list(connector(harbor).repositories())
    assert raised.value.retry_after == 7


def test_page_size_is_bounded_by_harbors_cap() -> None:
    with pytest.raises(ConfigError, match="page_size: Value error, page size must be between 1 and 100"):
        connectors.config_for(
            "harbor",
            {"url": "https://harbor.example.test", "username": "u", "page_size": 500},
            {"password": "p"},
        )


def test_a_fake_answer_harbor_would_never_send_fails_the_test(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry)
    harbor.mutate = lambda body: [
        {**item, "name": 42} for item in body
    ]  # a number where Harbor sends a string
    with pytest.raises(TransientError, match="500 from"):
        list(connector(harbor).repositories())
    assert "42 is not of type 'string'" in harbor.drift[0]
    harbor.drift.clear()  # seen; the fixture would otherwise fail this test for it
