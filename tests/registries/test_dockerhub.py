"""The Docker Hub connector against a fake Hub API over a real docker-registry (tests/fakes/dockerhub.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from registries import connectors, services, sync
from registries.connectors.dockerhub import DockerHubConnector
from registries.connectors.errors import AuthError, ConfigError, RateLimited, TransientError
from registries.demo import images as im
from registries.models import Artifact, Registry, SyncRun
from tests.fakes.dockerhub import FakeDockerHub
from tests.fakes.server import Answer
from tests.registries.harness import RunningRegistry

PUSHED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
PULLED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def hub(registry: RunningRegistry) -> Iterator[FakeDockerHub]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Docker Hub does not use:\n" + "\n".join(fake.drift)


def public_config(fake: FakeDockerHub, **extra: Any) -> dict[str, Any]:
    return {
        "url": fake.url,
        "registry_url": fake.url,
        "namespace": "acme",
        "username": fake.username,
        **extra,
    }


def connector(fake: FakeDockerHub, **extra: Any) -> DockerHubConnector:
    built = connectors.build("dockerhub", public_config(fake, **extra), {"token": fake.token})
    assert isinstance(built, DockerHubConnector)
    return built


def seed(registry: RunningRegistry) -> dict[str, im.Image]:
    pusher = registry.pusher()
    app, worker = im.base_image("app"), im.base_image("worker")
    pusher.push_image("acme/app", app, tags=["1.0", "latest"])
    pusher.push_image("acme/worker", worker, tags=["2"])
    pusher.push_image("acme/tools", worker, tags=["x"])
    pusher.push_image("other/app", app, tags=["1"])  # another namespace: never listed
    return {"app": app, "worker": worker}


def test_repositories_and_tags_of_the_namespace_with_their_times(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    images = seed(registry)
    hub.push_times["acme/app", "1.0"], hub.push_times["acme/app", "latest"] = PUSHED, LATER
    hub.pull_times["acme/app", "1.0"] = PULLED
    hub_connector = connector(hub, page_size=2)

    assert [r.name for r in hub_connector.repositories()] == ["acme/app", "acme/tools", "acme/worker"]
    tags = hub_connector.tags("acme/app")
    assert [(t.name, t.digest) for t in tags] == [
        ("1.0", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    artifact = hub_connector.artifact("acme/app", images["app"].digest)
    # Both tags point at the artifact: it was last pushed and pulled when the latest of them was.
    assert (artifact.pushed_at, artifact.last_pulled_at) == (LATER, PULLED)
    assert artifact.layer_digests == tuple(layer.digest for layer in images["app"].layers)
    assert hub.sign_ins == 1  # one JWT for the whole listing


def test_an_expired_hub_session_is_renewed_once(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    seed(registry)
    hub_connector = connector(hub)
    list(hub_connector.repositories())
    hub.revoke_sessions()
    assert len(list(hub_connector.repositories())) == 3
    assert hub.sign_ins == 2


@pytest.mark.django_db
def test_a_sync_through_the_real_pipeline(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    images = seed(registry)
    hub.pull_times["acme/worker", "2"] = PULLED
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={key: value for key, value in public_config(hub).items() if key != "url"},
        secrets={"token": hub.token},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    worker = Artifact.objects.get(repository__registry=saved, repository__name="acme/worker")
    assert worker.digest == images["worker"].digest
    assert worker.last_pulled_at == PULLED
    assert "dckr_pat_" not in str(saved.config)


def test_a_wrong_token_is_an_auth_error(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    built = connectors.build("dockerhub", public_config(hub), {"token": "dckr_pat_wrong"})
    with pytest.raises(AuthError, match="401 from .*/v2/auth/token"):
        built.check()


def test_the_old_epoch_retry_hint_is_understood(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    seed(registry)
    hub_connector = connector(hub)
    list(hub_connector.repositories())  # signed in
    hub.fail_next.append(
        Answer(429, {"detail": "Rate limit exceeded"}, headers={"X-Retry-After": str(int(time.time()) + 30)})
    )
    with pytest.raises(RateLimited) as raised:
        list(hub_connector.repositories())
    assert raised.value.retry_after is not None
    assert 20 <= raised.value.retry_after <= 31


def test_repositories_outside_the_namespace_are_refused(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    with pytest.raises(ConfigError, match="not in the namespace acme"):
        connector(hub).tags("other/app")


def test_the_namespace_must_be_one_name() -> None:
    with pytest.raises(ConfigError, match="namespace: Value error, the namespace is one organisation"):
        connectors.config_for(
            "dockerhub", {"namespace": "acme/team", "username": "u"}, {"token": "dckr_pat_x"}
        )


def test_a_fake_answer_the_hub_would_never_send_fails_the_test(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    hub.mutate = lambda body: {**body, "count": "three"} if "count" in body else body
    with pytest.raises(TransientError, match="500 from"):
        list(connector(hub).repositories())
    assert "three" in hub.drift[0]
    hub.drift.clear()  # seen; the fixture would otherwise fail this test for it


# --- the permission check: writes are optional, and an owner's token scope cannot be tried ----------------


def test_the_writes_are_optional_and_an_owners_token_scope_is_not_tried(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    checks = connector(hub).check_permissions()
    reads, [writes] = checks[:-1], checks[-1:]
    assert all(c.required and c.tried and c.ok for c in reads), [c for c in reads if not c.ok]
    assert (writes.required, writes.tried, writes.missing) == (False, False, False)
    assert writes.detail == f"{hub.username} is an owner; the token's scope is not tried"
    assert writes.permission.startswith("optional, only for reconcile plans and offboarding")


@pytest.mark.django_db
def test_a_member_account_lacks_only_the_optional_writes(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    hub.members[hub.username].role = "Member"  # the fake still lets a member read the organisation
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={key: value for key, value in public_config(hub).items() if key != "url"},
        secrets={"token": hub.token},
    )
    result = services.check_connection(saved)
    assert result.ok, result.reason
    [writes] = [step for step in result.steps if not step.required]
    assert (writes.tried, writes.missing) == (True, True)  # a member's role rules the writes out
    assert "1 write permissions are missing" in result.reason
