"""The admission webhook, fed AdmissionReview v1 payloads shaped as kube-apiserver sends them
(data/admission/*.json): where images live in each kind, the verdict from the inventory's lineage,
the configured choices (enforce or audit; unknown images allowed, warned about or denied), the
edge cases of docs A6, and the endpoint's authentication and answers."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import AuditEvent
from registries import admission_views
from registries.models import (
    Artifact,
    ArtifactLineage,
    BaseImage,
    BaseImageMirror,
    Registry,
    Repository,
)
from registries.policy import admission
from registries.policy.admission import (
    POD_SPEC_PATHS,
    ImageUse,
    ImageVerdict,
    InventoryJudge,
    MalformedReview,
    Mode,
    Policy,
    Status,
    UnknownImages,
)
from tests import factories

DATA = Path(__file__).parent / "data" / "admission"
HOST = "registry.example.test"
API = f"{HOST}/team/api:1.4"
TOKEN = "admission-test-token-0123456789abcdef"
KINDS = [
    "pod-create.json",
    "deployment-create.json",
    "replicaset-create.json",
    "statefulset-create.json",
    "daemonset-create.json",
    "job-create.json",
    "cronjob-create.json",
]


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / name).read_text())
    return body


def pod_spec(body: dict[str, Any], which: str = "object") -> dict[str, Any]:
    kind = body["request"]["kind"]
    here: Any = body["request"][which]
    for key in POD_SPEC_PATHS[(kind["group"], kind["kind"])]:
        here = here[key]
    spec: dict[str, Any] = here  # the review's own dict: changing it changes the review
    return spec


def with_images(body: dict[str, Any], image: str, which: str = "object") -> dict[str, Any]:
    """The review with every container image of `which` (object or oldObject) replaced."""
    body = copy.deepcopy(body)
    spec = pod_spec(body, which)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            container["image"] = image
    return body


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


class FakeJudge:
    """Answers from a table (approved when absent) and records what it was asked."""

    def __init__(self) -> None:
        self.verdicts: dict[str, ImageVerdict] = {}
        self.calls: list[list[str]] = []

    def table(self, verdicts: dict[str, ImageVerdict]) -> FakeJudge:
        self.verdicts = verdicts
        return self

    def __call__(self, images: Any) -> dict[str, ImageVerdict]:
        self.calls.append(list(images))
        return {
            image: self.verdicts.get(image, ImageVerdict(Status.APPROVED, f"image {image}: approved"))
            for image in images
        }


BANNED = ImageVerdict(
    Status.BANNED,
    f"image {API}: base docker.io/library/centos:7 is banned; use docker.io/library/almalinux:9 instead",
)
DEPRECATED = ImageVerdict(Status.DEPRECATED, f"image {API}: base docker.io/library/openjdk:17 is deprecated")
UNKNOWN = ImageVerdict(Status.UNKNOWN, f"image {API} is not in the Customs inventory, so its base is unknown")


def judged(body: dict[str, Any], judge: FakeJudge, policy: Policy | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = admission.review(body, judge, policy or Policy())["response"]
    return answer


# --- where images live (pure) --------------------------------------------------------------------


PLACES = {
    "pod-create.json": [
        ImageUse("container app", API),
        ImageUse("init container migrate", API),
        ImageUse("init container log-shipper", f"{HOST}/platform/log-shipper:2.3"),  # a native sidecar
    ],
    "pod-ephemeralcontainers-update.json": [
        ImageUse("container app", API),
        ImageUse("init container migrate", API),
        ImageUse("init container log-shipper", f"{HOST}/platform/log-shipper:2.3"),
        ImageUse("ephemeral container debugger-8fzkq", "busybox:1.36"),
    ],
    "deployment-create.json": [ImageUse("container app", API)],
    "replicaset-create.json": [ImageUse("container app", API)],
    "statefulset-create.json": [ImageUse("container postgres", f"{HOST}/data/postgres:16.3")],
    "daemonset-create.json": [ImageUse("container node-exporter", f"{HOST}/platform/node-exporter:1.8.1")],
    "job-create.json": [ImageUse("container migrate", API)],
    "cronjob-create.json": [ImageUse("container report", f"{HOST}/team/reports:3.0")],
}


@pytest.mark.parametrize("name", sorted(PLACES))
def test_every_image_of_every_kind_is_found(name: str) -> None:
    request = admission.read_review(load(name))
    assert request.object is not None
    uses = admission.images_of(request.object, POD_SPEC_PATHS[(request.group, request.kind)])
    assert uses == PLACES[name]


@pytest.mark.parametrize("name", sorted(PLACES))
def test_every_kind_is_judged_with_all_its_images(name: str) -> None:
    judge = FakeJudge()
    assert judged(load(name), judge)["allowed"] is True
    assert judge.calls == [sorted({use.image for use in PLACES[name]})]  # each image asked once


def test_a_replication_controller_template_is_read_too() -> None:
    body = load("replicaset-create.json")
    body["request"]["kind"] = {"group": "", "version": "v1", "kind": "ReplicationController"}
    body["request"]["object"]["spec"]["selector"] = {"app": "api"}
    judge = FakeJudge().table({API: BANNED})
    assert judged(body, judge)["allowed"] is False


def test_an_oci_image_volume_is_an_image_the_pod_runs() -> None:
    body = load("pod-create.json")
    pod_spec(body)["volumes"].append(
        {"name": "models", "image": {"reference": f"{HOST}/ml/weights:7", "pullPolicy": "IfNotPresent"}}
    )
    judge = FakeJudge().table({f"{HOST}/ml/weights:7": BANNED})
    answer = judged(body, judge)
    assert answer["allowed"] is False
    assert answer["status"]["message"].startswith("image volume models: ")


@pytest.mark.parametrize("init_containers", ["absent", [], None])
def test_init_containers_absent_empty_or_null_read_the_same(init_containers: Any) -> None:
    body = load("pod-create.json")
    spec = pod_spec(body)
    del spec["initContainers"]
    if init_containers != "absent":
        spec["initContainers"] = init_containers
    judge = FakeJudge()
    assert judged(body, judge) == {"uid": body["request"]["uid"], "allowed": True}
    assert judge.calls == [[API]]


# --- the answer (pure) -------------------------------------------------------------------------------


def test_an_allowed_review_echoes_the_envelope_and_the_uid_and_nothing_else() -> None:
    body = load("pod-create.json")
    assert admission.review(body, FakeJudge(), Policy()) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "5c7e1f0a-3a43-4d4e-9a3e-2f2c1b8e9d01", "allowed": True},
    }


@pytest.mark.parametrize("name", KINDS)
def test_a_denial_names_the_container_the_image_and_the_replacement(name: str) -> None:
    body = with_images(load(name), API)
    answer = judged(body, FakeJudge().table({API: BANNED}))
    assert answer["uid"] == body["request"]["uid"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert message.startswith("container ")
    assert API in message
    assert "use docker.io/library/almalinux:9 instead" in message
    assert "patch" not in answer
    assert "patchType" not in answer
    assert answer["auditAnnotations"]["decision"] == "deny"


def test_deprecated_is_allowed_with_a_warning() -> None:
    answer = judged(load("deployment-create.json"), FakeJudge().table({API: DEPRECATED}))
    assert answer["allowed"] is True
    assert answer["warnings"] == [f"container app: {DEPRECATED.message}"]
    assert "status" not in answer


@pytest.mark.parametrize(
    ("choice", "allowed", "warned"),
    [
        (UnknownImages.ALLOW, True, False),
        (UnknownImages.WARN, True, True),
        (UnknownImages.DENY, False, False),
    ],
)
def test_unknown_images_follow_the_configured_choice(
    choice: UnknownImages, allowed: bool, warned: bool
) -> None:
    answer = judged(load("deployment-create.json"), FakeJudge().table({API: UNKNOWN}), Policy(unknown=choice))
    assert answer["allowed"] is allowed
    assert ("warnings" in answer) is warned
    if not allowed:
        assert "not in the Customs inventory" in answer["status"]["message"]
        assert "unknown lineage are denied here" in answer["status"]["message"]


def test_audit_mode_allows_and_warns_what_enforce_would_deny() -> None:
    judge = FakeJudge().table({API: BANNED})
    answer = judged(load("deployment-create.json"), judge, Policy(mode=Mode.AUDIT))
    assert answer["allowed"] is True
    assert answer["warnings"] == [f"audit mode, enforce would deny: container app: {BANNED.message}"]
    assert answer["auditAnnotations"]["decision"] == "would-deny"


def test_audit_mode_with_unknown_deny_warns_instead() -> None:
    policy = Policy(mode=Mode.AUDIT, unknown=UnknownImages.DENY)
    answer = judged(load("deployment-create.json"), FakeJudge().table({API: UNKNOWN}), policy)
    assert answer["allowed"] is True
    assert answer["warnings"][0].startswith("audit mode, enforce would deny: container app: ")


@pytest.mark.parametrize("name", ["pod-delete.json", "pod-exec-connect.json"])
def test_delete_and_connect_are_allowed_untouched(name: str) -> None:
    body = load(name)
    judge = FakeJudge().table({API: BANNED})
    assert judged(body, judge) == {"uid": body["request"]["uid"], "allowed": True}
    assert judge.calls == []


def test_other_kinds_and_subresources_are_allowed_untouched() -> None:
    config_map = load("deployment-create.json")
    config_map["request"]["kind"] = {"group": "", "version": "v1", "kind": "ConfigMap"}
    config_map["request"]["object"] = {"kind": "ConfigMap", "apiVersion": "v1", "data": {"image": API}}
    status_update = load("pod-ephemeralcontainers-update.json")
    status_update["request"]["subResource"] = "status"
    judge = FakeJudge().table({API: BANNED, "busybox:1.36": BANNED})
    for body in (config_map, status_update):
        assert judged(body, judge) == {"uid": body["request"]["uid"], "allowed": True}
    assert judge.calls == []


def test_an_update_changing_only_an_image_is_judged_on_the_new_image() -> None:
    body = load("deployment-update-image.json")
    new = f"{HOST}/team/api:1.5"
    judge = FakeJudge().table({new: BANNED})
    answer = judged(body, judge)
    assert judge.calls == [[new]]
    assert answer["allowed"] is False


def test_an_update_fixing_a_denied_image_is_allowed() -> None:
    body = with_images(load("deployment-update-image.json"), API, which="oldObject")
    assert judged(body, FakeJudge().table({API: BANNED}))["allowed"] is True


def test_an_update_of_something_already_running_a_bad_image_is_not_blocked() -> None:
    # Grandfathering: scaling or relabelling a Deployment whose base was banned after it was
    # created still works (and says why it would not be admitted anew); a new Pod is still judged.
    body = load("deployment-update-image.json")
    body = with_images(with_images(body, API), API, which="oldObject")
    body["request"]["object"]["spec"]["replicas"] = 5
    answer = judged(body, FakeJudge().table({API: BANNED}))
    assert answer["allowed"] is True
    assert answer["warnings"] == [
        f"container app: {BANNED.message} (already in use, so this update passes; new Pods are still checked)"
    ]
    assert judged(load("replicaset-create.json"), FakeJudge().table({API: BANNED}))["allowed"] is False


def test_an_ephemeral_container_added_through_the_subresource_is_judged() -> None:
    body = load("pod-ephemeralcontainers-update.json")
    assert body["request"]["subResource"] == "ephemeralcontainers"
    judge = FakeJudge().table({"busybox:1.36": BANNED, API: BANNED})
    answer = judged(body, judge)
    assert answer["allowed"] is False
    # Only the debug container is new; the app container was running before the update.
    assert answer["status"]["message"] == f"ephemeral container debugger-8fzkq: {BANNED.message}"
    assert len(answer["warnings"]) == 2  # app and migrate run the grandfathered image


def test_the_pre_122_ephemeral_containers_kind_is_read() -> None:
    body = load("pod-ephemeralcontainers-update.json")
    pod = body["request"]["object"]
    body["request"]["kind"] = {"group": "", "version": "v1", "kind": "EphemeralContainers"}
    body["request"]["object"] = {
        "kind": "EphemeralContainers",
        "apiVersion": "v1",
        "metadata": pod["metadata"],
        "ephemeralContainers": pod["spec"]["ephemeralContainers"],
    }
    body["request"]["oldObject"] = {**body["request"]["object"], "ephemeralContainers": []}
    assert judged(body, FakeJudge().table({"busybox:1.36": BANNED}))["allowed"] is False


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda body: [], "not a JSON object"),
        (lambda body: {**body, "apiVersion": "admission.k8s.io/v1beta1"}, "admissionReviewVersions"),
        (lambda body: {**body, "kind": "TokenReview"}, "expected kind AdmissionReview"),
        (lambda body: {k: v for k, v in body.items() if k != "request"}, "has no request"),
        (lambda body: {**body, "request": {**body["request"], "uid": ""}}, "uid is missing"),
        (lambda body: {**body, "request": {**body["request"], "kind": "Pod"}}, "group/version/kind"),
        (lambda body: {**body, "request": {**body["request"], "operation": "PATCH"}}, "operation must be"),
        (lambda body: {**body, "request": {**body["request"], "object": "pod"}}, "object is not an object"),
        (lambda body: {**body, "request": {**body["request"], "object": None}}, "missing from a CREATE"),
    ],
)
def test_a_malformed_review_is_refused_with_the_reason(change: Any, complaint: str) -> None:
    with pytest.raises(MalformedReview, match=complaint):
        admission.review(change(load("pod-create.json")), FakeJudge(), Policy())


def test_an_object_without_a_readable_pod_spec_is_denied_not_ignored() -> None:
    body = load("pod-create.json")
    pod_spec(body)["containers"] = {"app": API}
    answer = judged(body, FakeJudge())
    assert answer["allowed"] is False
    assert answer["status"] == {
        "code": 400,
        "message": "Pod team-a/api-7d9f8c6b5-*: containers is not a list of objects",
    }


def test_warnings_are_kept_short_for_the_api_server() -> None:
    long = ImageVerdict(Status.DEPRECATED, "x" * 1000)
    answer = judged(load("deployment-create.json"), FakeJudge().table({API: long}))
    assert len(answer["warnings"][0]) == admission.WARNING_LIMIT


# --- judging by lineage, from the inventory -------------------------------------------------------

LEGACY = f"{HOST}/team/legacy:2.0"


@pytest.fixture
def inventory(db: None) -> dict[str, Any]:
    """A connected registry, the catalog, and images built on each kind of base."""
    registry = factories.registry(endpoint=f"https://{HOST}", kind="distribution")
    catalog = {
        "python": BaseImage.objects.create(name="docker.io/library/python", tags=["3.12-*", "3.13-*"]),
        "centos": BaseImage.objects.create(
            name="docker.io/library/centos",
            status=BaseImage.Status.BANNED,
            replacement="docker.io/library/almalinux:9",
        ),
        "openjdk": BaseImage.objects.create(
            name="docker.io/library/openjdk",
            status=BaseImage.Status.DEPRECATED,
            replacement="docker.io/library/eclipse-temurin:21-jre",
        ),
    }
    world: dict[str, Any] = {"registry": registry, **catalog}
    for name, tag, base in [
        ("team/api", "1.4", "docker.io/library/python:3.12-slim"),
        ("team/legacy", "2.0", "docker.io/library/centos:7"),
        ("team/billing", "3.1", "docker.io/library/openjdk:17"),
        ("team/worker", "0.9", "docker.io/library/alpine:3.19"),
    ]:
        world[name] = image(registry, name, tag, base)
    world["team/mystery"] = image(registry, "team/mystery", "1.0", None)
    world["team/fresh"] = image(registry, "team/fresh", "1.0", "")  # no lineage decided yet
    return world


def image(registry: Registry, name: str, tag: str, base: str | None, **lineage: Any) -> Artifact:
    """A tagged artifact; `base` None records an unknown lineage, "" none at all."""
    repository = Repository.objects.filter(registry=registry, name=name).first() or factories.repository(
        registry, name=name
    )
    artifact = factories.artifact(repository, digest=digest(f"{name}:{tag}"))
    factories.tag(artifact, name=tag)
    if base is None:
        ArtifactLineage.objects.create(artifact=artifact, method=ArtifactLineage.Method.UNKNOWN)
    elif base:
        lineage.setdefault("method", ArtifactLineage.Method.ANNOTATION)
        ArtifactLineage.objects.create(artifact=artifact, base_reference=base, **lineage)
    return artifact


def verdict(image_name: str) -> ImageVerdict:
    return InventoryJudge.load()([image_name])[image_name]


@pytest.mark.parametrize(
    ("image_name", "status", "says"),
    [
        (API, Status.APPROVED, "base docker.io/library/python:3.12-slim is approved"),
        (
            LEGACY,
            Status.BANNED,
            "base docker.io/library/centos:7 is banned; use docker.io/library/almalinux:9",
        ),
        (
            f"{HOST}/team/billing:3.1",
            Status.DEPRECATED,
            "openjdk:17 is deprecated; use docker.io/library/eclipse-temurin:21-jre instead",
        ),
        (
            f"{HOST}/team/worker:0.9",
            Status.UNAPPROVED,
            "alpine is not in the base-image catalog; choose an approved base from the Customs",
        ),
        (f"{HOST}/team/mystery:1.0", Status.UNKNOWN, "built on is unknown (Customs could not tell)"),
        (f"{HOST}/team/fresh:1.0", Status.UNKNOWN, "built on is unknown (not decided yet)"),
        (f"{HOST}/team/api:9.9", Status.UNKNOWN, "is not in the Customs inventory"),  # tag never pushed
        ("elsewhere.example.test/team/api:1.4", Status.UNKNOWN, "is not in the Customs inventory"),
    ],
)
def test_an_image_is_judged_by_its_lineage(
    inventory: dict[str, Any], image_name: str, status: Status, says: str
) -> None:
    found = verdict(image_name)
    assert found.status is status
    assert image_name in found.message
    assert says in found.message


@pytest.mark.parametrize(
    ("image_name", "status", "says"),
    [
        ("python:3.12-slim", Status.APPROVED, "docker.io/library/python:3.12-slim is approved"),
        (
            "centos:7",
            Status.BANNED,
            "docker.io/library/centos:7 is banned; use docker.io/library/almalinux:9",
        ),
        ("python:3.9", Status.UNAPPROVED, "tag 3.9 is not allowed"),
        ("docker.io/library/python", Status.UNAPPROVED, "tag latest is not allowed"),  # latest implied
        ("index.docker.io/library/openjdk:17", Status.DEPRECATED, "eclipse-temurin:21-jre"),
        ("registry-1.docker.io/library/centos:7", Status.BANNED, "almalinux:9"),
        # Docker Hub under another host still adds library/ to an official image's name
        ("registry-1.docker.io/centos:7", Status.BANNED, "almalinux:9"),
        ("Registry.Hub.Docker.com/centos:7", Status.BANNED, "almalinux:9"),
    ],
)
def test_a_catalog_image_run_directly_is_judged_by_the_catalog(
    inventory: dict[str, Any], image_name: str, status: Status, says: str
) -> None:
    found = verdict(image_name)
    assert found.status is status
    assert image_name in found.message
    assert says in found.message


def test_a_regional_mirror_of_a_catalog_image_is_the_catalog_image(inventory: dict[str, Any]) -> None:
    BaseImageMirror.objects.create(
        base_image=inventory["centos"], registry=inventory["registry"], repository="base/centos"
    )
    found = verdict(f"{HOST}/base/centos:7")
    assert found.status is Status.BANNED
    assert "use docker.io/library/almalinux:9 instead" in found.message


def test_a_digest_only_image_is_found_by_its_digest(inventory: dict[str, Any]) -> None:
    assert verdict(f"{HOST}/team/api@{inventory['team/api'].digest}").status is Status.APPROVED
    assert verdict(f"{HOST}/team/api@{digest('never pushed')}").status is Status.UNKNOWN


def test_with_a_tag_and_a_digest_the_digest_decides(inventory: dict[str, Any]) -> None:
    # legacy:2.0 is built on a banned base; the digest written beside the tag is a rebuild on an
    # approved one, and the digest is what the node pulls.
    rebuilt = factories.artifact(inventory["team/legacy"].repository, digest=digest("legacy rebuilt"))
    ArtifactLineage.objects.create(
        artifact=rebuilt,
        method=ArtifactLineage.Method.ANNOTATION,
        base_reference="docker.io/library/python:3.13-slim",
    )
    assert verdict(f"{LEGACY}@{rebuilt.digest}").status is Status.APPROVED
    # The digest is looked for in the repository named, not anywhere: legacy's digest is not api's.
    elsewhere = f"{HOST}/team/api:1.4@{inventory['team/legacy'].digest}"
    assert verdict(elsewhere).status is Status.UNKNOWN


def test_an_uppercase_repository_is_invalid_and_an_uppercase_host_is_not(inventory: dict[str, Any]) -> None:
    found = verdict(f"{HOST}/Team/API:1.4")
    assert found.status is Status.INVALID
    assert "must be lowercase" in found.message
    assert verdict("Registry.Example.Test/team/api:1.4").status is Status.APPROVED


def test_an_index_is_its_worst_platform(inventory: dict[str, Any]) -> None:
    registry = inventory["registry"]
    index = image(registry, "team/multi", "1.0", "")
    for platform, base in [("linux/amd64", "docker.io/library/python:3.12-slim"), ("linux/arm64", "")]:
        child = factories.artifact(index.repository, index=index, platform=platform)
        ArtifactLineage.objects.create(
            artifact=child, method=ArtifactLineage.Method.ANNOTATION, base_reference=base
        )
    # arm64's lineage records no base at all: a node pulling it runs something unknown.
    assert verdict(f"{HOST}/team/multi:1.0").status is Status.UNKNOWN
    ArtifactLineage.objects.filter(artifact__platform="linux/arm64").update(
        base_reference="docker.io/library/centos:7"
    )
    assert verdict(f"{HOST}/team/multi:1.0").status is Status.BANNED
    # A lineage decided for the index itself speaks for all its platforms.
    ArtifactLineage.objects.create(
        artifact=index,
        method=ArtifactLineage.Method.PROVENANCE,
        base_reference="docker.io/library/python:3.13-slim",
    )
    assert verdict(f"{HOST}/team/multi:1.0").status is Status.APPROVED


def test_a_base_known_only_as_a_catalog_entry_is_judged_by_its_status(inventory: dict[str, Any]) -> None:
    artifact = image(inventory["registry"], "team/layered", "1.0", "")
    ArtifactLineage.objects.create(
        artifact=artifact,
        method=ArtifactLineage.Method.LAYERS,
        base_image=inventory["openjdk"],
        matched_layers=4,
    )
    found = verdict(f"{HOST}/team/layered:1.0")
    assert found.status is Status.DEPRECATED
    assert "use docker.io/library/eclipse-temurin:21-jre instead" in found.message


def test_registries_are_found_by_every_host_their_images_are_pulled_from(inventory: dict[str, Any]) -> None:
    hub = factories.registry(
        kind="dockerhub",
        endpoint="https://hub.docker.com",
        config={"namespace": "acme", "registry_url": "https://registry-1.docker.io"},
    )
    image(hub, "acme/api", "2.0", "docker.io/library/centos:7")
    gar = factories.registry(
        kind="gar",
        endpoint="https://europe-west1-docker.pkg.dev",
        config={"project": "acme-prod", "location": "europe-west1"},
    )
    image(gar, "images/api", "1.0", "docker.io/library/centos:7")
    image(gar, "gcr.io/legacy-api", "1.0", "docker.io/library/centos:7")
    factories.replica(inventory["registry"], endpoint="https://registry-us.example.test")
    for pulled_as in [
        "acme/api:2.0",  # Docker Hub, as everyone writes it
        "europe-west1-docker.pkg.dev/acme-prod/images/api:1.0",
        "gcr.io/acme-prod/legacy-api:1.0",
        "registry-us.example.test/team/legacy:2.0",  # a replica's host
    ]:
        assert verdict(pulled_as).status is Status.BANNED, pulled_as
    # Another project's path on the same Artifact Registry host is not this registry's image.
    assert verdict("europe-west1-docker.pkg.dev/other-project/images/api:1.0").status is Status.UNKNOWN


def test_judging_takes_the_same_queries_for_one_image_or_many(inventory: dict[str, Any]) -> None:
    many = [
        API,
        LEGACY,
        f"{HOST}/team/billing:3.1",
        f"{HOST}/team/api@{inventory['team/api'].digest}",
        "centos:7",
    ]
    with CaptureQueriesContext(connection) as one:
        InventoryJudge.load()([API])
    with CaptureQueriesContext(connection) as several:
        verdicts = InventoryJudge.load()(many)
    assert len(several) == len(one) + 1  # only the digest lookup is added, once for every digest
    assert [verdicts[name].status for name in many] == [
        Status.APPROVED,
        Status.BANNED,
        Status.DEPRECATED,
        Status.APPROVED,
        Status.BANNED,
    ]


# --- the endpoint --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_denial_window() -> None:
    admission_views.DENIALS.forget()


@pytest.fixture
def configured(settings: Any) -> Any:
    settings.ADMISSION_TOKEN = TOKEN
    settings.ADMISSION_MODE = "enforce"
    settings.ADMISSION_UNKNOWN = "warn"
    return settings


def url() -> str:
    return reverse("admission:validate")


def send(client: Client, body: Any, *, token: str = TOKEN, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(url(), data, content_type=content_type, headers={"Authorization": f"Bearer {token}"})


def denials() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="admission.deny").order_by("sequence"))


def test_the_route_is_the_one_the_readme_configures() -> None:
    assert url() == "/admission/v1/validate"


def test_without_a_configured_token_the_webhook_refuses_to_run(
    client: Client, settings: Any, db: None
) -> None:
    settings.ADMISSION_TOKEN = ""
    response = send(client, load("pod-create.json"))
    assert response.status_code == 503
    assert "CUSTOMS_ADMISSION_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("offered", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_the_api_server_must_present_the_token(client: Client, configured: Any, offered: str | None) -> None:
    headers = {} if offered is None else {"Authorization": f"Bearer {offered}"}
    response = client.post(
        url(), json.dumps(load("pod-create.json")), content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="customs-admission"'


def test_a_session_is_no_credential(client: Client, configured: Any, admin: Any) -> None:
    client.force_login(admin)
    response = client.post(url(), json.dumps(load("pod-create.json")), content_type="application/json")
    assert response.status_code == 401


def test_only_post(client: Client, configured: Any) -> None:
    assert client.get(url(), headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "the body is not JSON"),
        (
            json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
            "application/json",
            400,
            "admissionReviewVersions",
        ),
        (b"uid=1", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
def test_what_is_not_an_admission_review_gets_a_readable_refusal(
    client: Client, configured: Any, body: bytes, content_type: str, status: int, says: str
) -> None:
    response = send(client, body, content_type=content_type)
    assert response.status_code == status
    assert says in response.json()["error"]


def test_a_review_larger_than_djangos_form_limit_is_read(client: Client, configured: Any, db: None) -> None:
    # An UPDATE carries the object twice; a large last-applied annotation alone can pass 2.5 MB.
    body = load("deployment-update-image.json")
    for which in ("object", "oldObject"):
        body["request"][which]["metadata"]["annotations"]["note"] = "x" * 1_500_000
    response = send(client, body)
    assert response.status_code == 200
    assert response.json()["response"]["uid"] == body["request"]["uid"]
    assert send(client, b" " * (admission_views.MAX_BODY + 1)).status_code == 413


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_through_the_endpoint(
    client: Client, configured: Any, inventory: dict[str, Any], name: str
) -> None:
    allowed = send(client, with_images(load(name), API))
    assert allowed.status_code == 200
    assert allowed.json() == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": load(name)["request"]["uid"], "allowed": True},
    }
    denied = send(client, with_images(load(name), LEGACY))
    assert denied.status_code == 200  # a denial is an answer, not an HTTP error
    answer = denied.json()["response"]
    assert answer["allowed"] is False
    assert LEGACY in answer["status"]["message"]
    assert "use docker.io/library/almalinux:9 instead" in answer["status"]["message"]


def test_a_denial_is_audited_once_a_window(
    client: Client, configured: Any, inventory: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = with_images(load("pod-create.json"), LEGACY)
    for _ in range(3):  # the ReplicaSet controller retries the Pod
        send(client, body)
    (event,) = denials()
    assert event.actor_id is None
    assert event.target_type == "kubernetes.pod"
    assert event.target_id == "team-a/api-7d9f8c6b5-*"
    assert event.detail["enforced"] is True
    assert event.detail["kubernetes_user"] == "system:serviceaccount:kube-system:replicaset-controller"
    assert event.detail["review_uid"] == body["request"]["uid"]
    assert all(LEGACY in line for line in event.detail["violations"])
    monkeypatch.setattr(admission_views.DENIALS, "seconds", 0.0)  # the window is over
    send(client, body)
    assert [e.detail["repeated_before"] for e in denials()] == [0, 2]


def test_a_dry_run_gets_the_verdict_and_leaves_no_trace(
    client: Client, configured: Any, inventory: dict[str, Any]
) -> None:
    body = with_images(load("deployment-create.json"), LEGACY)
    body["request"]["dryRun"] = True
    answer = send(client, body).json()["response"]
    assert answer["allowed"] is False
    assert denials() == []


def test_audit_mode_lets_it_through_and_records_what_would_be_denied(
    client: Client, configured: Any, inventory: dict[str, Any]
) -> None:
    configured.ADMISSION_MODE = "audit"
    answer = send(client, with_images(load("deployment-create.json"), LEGACY)).json()["response"]
    assert answer["allowed"] is True
    assert answer["warnings"][0].startswith("audit mode, enforce would deny: container app: ")
    (event,) = denials()
    assert event.detail["enforced"] is False


def test_the_unknown_choice_comes_from_settings(
    client: Client, configured: Any, inventory: dict[str, Any]
) -> None:
    body = with_images(load("deployment-create.json"), f"{HOST}/team/mystery:1.0")
    assert "warnings" in send(client, body).json()["response"]
    configured.ADMISSION_UNKNOWN = "deny"
    assert send(client, body).json()["response"]["allowed"] is False
    configured.ADMISSION_UNKNOWN = "allow"
    assert send(client, body).json()["response"] == {"uid": body["request"]["uid"], "allowed": True}


def test_a_setting_outside_the_choices_is_a_configuration_error(settings: Any) -> None:
    settings.ADMISSION_UNKNOWN = "maybe"
    with pytest.raises(ImproperlyConfigured, match="CUSTOMS_ADMISSION_UNKNOWN"):
        admission_views.policy()


def test_defaults_are_enforce_and_warn() -> None:
    # portal/settings.py's defaults when CUSTOMS_ADMISSION_MODE and _UNKNOWN are not set.
    assert admission_views.policy() == Policy(mode=Mode.ENFORCE, unknown=UnknownImages.WARN)


@pytest.mark.parametrize("unknown", ["allow", "warn", "deny"])
def test_an_unreachable_private_registry_does_not_decide_nor_delay_the_answer(
    client: Client, configured: Any, inventory: dict[str, Any], monkeypatch: pytest.MonkeyPatch, unknown: str
) -> None:
    # The registry's endpoint is closed and its images need imagePullSecrets: the answer comes from
    # the inventory Customs synced, without a single outbound request, and follows the unknown choice.
    registry = factories.registry(endpoint=factories.CLOSED_ENDPOINT)
    image(registry, "team/api", "1.4", "docker.io/library/centos:7")
    configured.ADMISSION_UNKNOWN = unknown

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the admission webhook must not call out")

    monkeypatch.setattr("requests.Session.request", no_network)
    closed = "127.0.0.1:9"
    known = with_images(load("pod-create.json"), f"{closed}/team/api:1.4")
    assert pod_spec(known)["imagePullSecrets"] == [{"name": "registry-example-pull"}]
    started = time.monotonic()
    answer = send(client, known).json()["response"]
    assert answer["allowed"] is False
    assert "centos:7 is banned" in answer["status"]["message"]
    never_synced = send(client, with_images(load("pod-create.json"), f"{closed}/team/new:0.1")).json()[
        "response"
    ]
    assert never_synced["allowed"] is (unknown != "deny")
    assert ("warnings" in never_synced) is (unknown == "warn")
    assert time.monotonic() - started < 5  # timeoutSeconds in the README's configuration


def test_a_review_costs_the_same_queries_whatever_the_pod_runs(
    client: Client, configured: Any, inventory: dict[str, Any]
) -> None:
    small = with_images(load("deployment-create.json"), API)
    large = load("pod-create.json")
    pod_spec(large)["containers"] += [
        {"name": f"c{n}", "image": name}
        for n, name in enumerate([LEGACY, f"{HOST}/team/billing:3.1", f"{HOST}/team/fresh:1.0", "centos:7"])
    ]
    with CaptureQueriesContext(connection) as one:
        send(client, small)
    with CaptureQueriesContext(connection) as many:
        answer = send(client, large).json()["response"]
    assert answer["allowed"] is False
    # Recording the denial is the only addition (the chain head, the event, their savepoint).
    judging = [
        q for q in many.captured_queries if "portal_audit" not in q["sql"] and "SAVEPOINT" not in q["sql"]
    ]
    assert len(judging) == len(one)
