"""Kubernetes admission: may the images of a Pod, or of a workload's pod template, run?

A ValidatingAdmissionWebhook speaking AdmissionReview v1 (docs A6). The review is pure:
`review(body, judge, policy)` reads the AdmissionReview, collects every image the object would
run, asks `judge` once about the distinct images, and builds the response, so it is tested with
plain dicts. `InventoryJudge` is the judge the endpoint uses: an image is judged by what it is
built on (its lineage in the inventory), in a fixed number of queries per review, and never by
asking a registry: the API server waits on this answer, and a registry that is slow, down or
private (imagePullSecrets) must not decide it.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from registries.connectors.artifact_registry import GCR_HOSTS
from registries.models import Artifact, ArtifactLineage, Registry, Tag
from registries.policy.catalog import Catalog, Judgement, judge_status
from registries.policy.references import (
    InvalidReference,
    Reference,
    endpoint_host,
    on_docker_hub,
    parse,
    with_default_tag,
)

API_VERSION = "admission.k8s.io/v1"
REVIEW_KIND = "AdmissionReview"
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
CHECKED_OPERATIONS = frozenset({"CREATE", "UPDATE"})
# Kubernetes shows warnings as response headers and may cut longer ones (and long lists of them).
WARNING_LIMIT = 256

# Where each kind keeps the pod spec that says what runs (docs A6, "Where images live"), by
# (API group, kind). Controllers create the Pods, so the Pod check stays the authoritative one;
# templates give the person applying a Deployment the answer at once instead of a stuck rollout.
_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): _TEMPLATE,
    ("apps", "Deployment"): _TEMPLATE,
    ("apps", "ReplicaSet"): _TEMPLATE,
    ("apps", "StatefulSet"): _TEMPLATE,
    ("apps", "DaemonSet"): _TEMPLATE,
    ("batch", "Job"): _TEMPLATE,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
    # API servers before 1.22 sent `kubectl debug`'s subresource update as this kind.
    ("", "EphemeralContainers"): (),
}
CONTAINER_LISTS = (
    ("containers", "container"),
    ("initContainers", "init container"),  # native sidecars (restartPolicy: Always) are listed here
    ("ephemeralContainers", "ephemeral container"),
)
# A Pod's subresources other than these (status, binding, eviction...) change nothing that runs.
CHECKED_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    AUDIT = "audit"  # allow everything; say in warnings what enforce would deny


class UnknownImages(enum.StrEnum):
    """What happens to an image whose base Customs cannot tell."""

    ALLOW = "allow"
    WARN = "warn"
    DENY = "deny"


@dataclass(frozen=True)
class Policy:
    mode: Mode = Mode.ENFORCE
    unknown: UnknownImages = UnknownImages.WARN


class Status(enum.StrEnum):
    APPROVED = "approved"
    DEPRECATED = "deprecated"
    UNKNOWN = "unknown"
    UNAPPROVED = "unapproved"
    BANNED = "banned"
    INVALID = "invalid"


# Worst last: an image that is several things (an index whose platforms differ) is its worst.
SEVERITY = {status: rank for rank, status in enumerate(Status)}


@dataclass(frozen=True)
class ImageVerdict:
    status: Status
    message: str  # names the image, and the replacement when the catalog has one


Judge = Callable[[Sequence[str]], Mapping[str, ImageVerdict]]
_Row = TypeVar("_Row", bound=Model)


class MalformedReview(ValueError):
    """Not an AdmissionReview v1 this endpoint can answer (HTTP 400)."""


class MalformedObject(ValueError):
    """A well-formed review whose object has no readable pod spec (answered as a denial)."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    group: str
    kind: str
    operation: str
    sub_resource: str
    namespace: str
    name: str
    username: str
    dry_run: bool
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None

    @property
    def subject(self) -> str:
        """`Kind namespace/name`; a Pod created from generateName has no name yet, only its prefix."""
        name = self.name or _generate_name(self.object) or "?"
        return f"{self.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind} {name}"


@dataclass(frozen=True)
class ImageUse:
    where: str  # "container app", "init container migrate", "image volume models"
    image: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: int = 200
    message: str = ""
    warnings: tuple[str, ...] = ()
    # What enforce mode denies, kept in audit mode too (where they became warnings) for the audit trail.
    violations: tuple[str, ...] = ()


ALLOWED_UNTOUCHED = Decision(allowed=True)


# --- the review (pure) -----------------------------------------------------------------------


def review(body: object, judge: Judge, policy: Policy) -> dict[str, Any]:
    """An AdmissionReview v1 request in, the AdmissionReview response out. Raises MalformedReview."""
    request = read_review(body)
    return response(request, decide(request, judge, policy))


def read_review(body: object) -> AdmissionRequest:
    """The request of an AdmissionReview v1, or MalformedReview saying what is wrong with it."""
    if not isinstance(body, dict):
        raise MalformedReview("the body is not a JSON object")
    if body.get("kind") != REVIEW_KIND or body.get("apiVersion") != API_VERSION:
        raise MalformedReview(
            f"expected kind {REVIEW_KIND}, apiVersion {API_VERSION} (list only v1 in the webhook's "
            "admissionReviewVersions)"
        )
    request = body.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("the review has no request")
    uid, kind, operation = request.get("uid"), request.get("kind"), request.get("operation")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise MalformedReview("request.kind is not a group/version/kind")
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation must be one of {', '.join(sorted(OPERATIONS))}")
    obj = _object(request, "object")
    if obj is None and operation in CHECKED_OPERATIONS:
        raise MalformedReview(f"request.object is missing from a {operation}")
    user = request.get("userInfo")
    return AdmissionRequest(
        uid=uid,
        group=str(kind.get("group") or ""),
        kind=str(kind["kind"]),
        operation=str(operation),
        sub_resource=str(request.get("subResource") or ""),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        username=str(user.get("username") or "") if isinstance(user, dict) else "",
        dry_run=request.get("dryRun") is True,
        object=obj,
        old_object=_object(request, "oldObject"),
    )


def _object(request: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = request.get(key)
    if value is not None and not isinstance(value, dict):
        raise MalformedReview(f"request.{key} is not an object")
    return value


def decide(request: AdmissionRequest, judge: Judge, policy: Policy) -> Decision:
    """Allow, warn or deny. `judge` is called at most once, and only when there are images."""
    path = POD_SPEC_PATHS.get((request.group, request.kind))
    if (
        path is None
        or request.operation not in CHECKED_OPERATIONS
        or request.sub_resource not in CHECKED_SUBRESOURCES
        or request.object is None
    ):
        return ALLOWED_UNTOUCHED
    try:
        uses = images_of(request.object, path)
    except MalformedObject as exc:
        return _conclude([f"{request.subject}: {exc}"], [], policy, code=400)
    verdicts = judge(sorted({use.image for use in uses})) if uses else {}
    before = _images_before(request, path)
    violations: list[str] = []
    warnings: list[str] = []
    for use in uses:
        verdict = verdicts[use.image]
        line = f"{use.where}: {verdict.message}"
        if _violates(verdict.status, policy):
            if use.image in before:
                # Grandfathered: denying here would block every edit of something already running
                # (a label, a finalizer a controller removes) without stopping the image. The Pods
                # a rollout or a rescheduling creates are CREATEs, and judged as such.
                warnings.append(f"{line} (already in use, so this update passes; new Pods are still checked)")
            else:
                violations.append(_with_unknown_note(line, verdict.status))
        elif verdict.status is Status.DEPRECATED or (
            verdict.status is Status.UNKNOWN and policy.unknown is UnknownImages.WARN
        ):
            warnings.append(line)
    return _conclude(violations, warnings, policy)


def _violates(status: Status, policy: Policy) -> bool:
    if status is Status.UNKNOWN:
        return policy.unknown is UnknownImages.DENY
    return status in (Status.UNAPPROVED, Status.BANNED, Status.INVALID)


def _with_unknown_note(line: str, status: Status) -> str:
    return f"{line}; images of unknown lineage are denied here" if status is Status.UNKNOWN else line


def _conclude(violations: list[str], warnings: list[str], policy: Policy, *, code: int = 403) -> Decision:
    if policy.mode is Mode.AUDIT:
        warnings = [f"audit mode, enforce would deny: {line}" for line in violations] + warnings
        return Decision(True, warnings=_unique(warnings), violations=tuple(violations))
    if not violations:
        return Decision(True, warnings=_unique(warnings))
    return Decision(
        False,
        code=code,
        message="; ".join(violations),
        warnings=_unique(warnings),
        violations=tuple(violations),
    )


def _unique(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lines))


def _images_before(request: AdmissionRequest, path: tuple[str, ...]) -> frozenset[str]:
    """Images the object already ran before this UPDATE (none on CREATE, or when unreadable)."""
    if request.operation != "UPDATE" or request.old_object is None:
        return frozenset()
    try:
        return frozenset(use.image for use in images_of(request.old_object, path))
    except MalformedObject:
        return frozenset()  # an old object we cannot read grandfathers nothing


def images_of(obj: Mapping[str, Any], path: tuple[str, ...]) -> list[ImageUse]:
    """Every image the pod spec at `path` runs: containers, init and ephemeral containers, image volumes."""
    spec = _dig(obj, path)
    if spec is None:
        return []
    uses: list[ImageUse] = []
    for key, label in CONTAINER_LISTS:
        for item in _list(spec, key):
            if image := _string(item, "image", f"{key}[].image"):
                uses.append(ImageUse(f"{label} {item.get('name') or '?'}", image))
    for volume in _list(spec, "volumes"):
        source = volume.get("image")
        if isinstance(source, dict) and (
            reference := _string(source, "reference", "volumes[].image.reference")
        ):
            uses.append(ImageUse(f"image volume {volume.get('name') or '?'}", reference))
    return uses


def _dig(obj: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
    here: Any = obj
    for key in path:
        here = here.get(key) if isinstance(here, dict) else None
    if here is None:
        return None
    if not isinstance(here, dict):
        raise MalformedObject(f"{'.'.join(path)} is not an object")
    return here


def _list(spec: Mapping[str, Any], key: str) -> Iterator[Mapping[str, Any]]:
    items = spec.get(key)
    if items is None:  # absent, or null: the same as []
        return
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedObject(f"{key} is not a list of objects")
    yield from items


def _string(item: Mapping[str, Any], key: str, where: str) -> str:
    # An empty image is allowed in a workload template (a tool fills it in); the Pod check sees the result.
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedObject(f"{where} is not a string")
    return value.strip()


def _generate_name(obj: Mapping[str, Any] | None) -> str:
    metadata = obj.get("metadata") if obj else None
    prefix = metadata.get("generateName") if isinstance(metadata, dict) else None
    return f"{prefix}*" if isinstance(prefix, str) and prefix else ""


def response(request: AdmissionRequest, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview v1 response: always answered with HTTP 200."""
    answer: dict[str, Any] = {"uid": request.uid, "allowed": decision.allowed}
    if not decision.allowed:
        answer["status"] = {"code": decision.code, "message": decision.message}
    if decision.warnings:
        answer["warnings"] = [_short(line) for line in decision.warnings]
    if decision.violations:
        # The API server's audit log keeps these, prefixed with the webhook's name.
        answer["auditAnnotations"] = {
            "decision": "deny" if not decision.allowed else "would-deny",
            "violations": _short("; ".join(decision.violations), 1000),
        }
    return {"apiVersion": API_VERSION, "kind": REVIEW_KIND, "response": answer}


def _short(text: str, limit: int = WARNING_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- judging images by their lineage (reads the database) --------------------------------------


@dataclass(frozen=True)
class _Place:
    """A connected registry a reference's domain may name."""

    registry_id: int
    kind: str
    project: str = ""  # Artifact Registry: the project every docker path there starts with

    def names(self, domain: str, path: str) -> list[str]:
        """The inventory repository names a docker path on this registry is stored under."""
        if self.kind != "gar":
            return [path]
        # Artifact Registry's inventory keeps "<repository>/<image path>" without the project, and
        # "<gcr host>/<image path>" for gcr.io repositories (registries/connectors/artifact_registry.py).
        project, _, rest = path.partition("/")
        if project != self.project or not rest:
            return []
        return [f"{domain}/{rest}" if domain in GCR_HOSTS else rest]


@dataclass(frozen=True)
class _Lineage:
    method: str
    base_reference: str
    base_image_id: int | None


@dataclass
class _Lineages:
    own: dict[int, _Lineage] = field(default_factory=dict)
    platforms: dict[int, list[_Lineage]] = field(default_factory=lambda: defaultdict(list))


class InventoryJudge:
    """Judges images by the base the inventory's lineage records, and catalog images directly.

    Loaded per review: two queries for the catalog and two for the registries, then at most
    three for any number of images (artifacts by digest, tags, lineage).
    """

    def __init__(self, catalog: Catalog, places: Mapping[str, Sequence[_Place]]) -> None:
        self.catalog = catalog
        self.places = places

    @classmethod
    def load(cls) -> InventoryJudge:
        places: dict[str, list[_Place]] = defaultdict(list)
        registries = Registry.objects.only("pk", "kind", "endpoint", "config").prefetch_related("replicas")
        for registry in registries:
            config = registry.config if isinstance(registry.config, dict) else {}
            place = _Place(registry.pk, registry.kind, str(config.get("project") or ""))
            for host in _hosts(registry, config):
                places[host].append(place)
        return cls(Catalog.load(), places)

    def __call__(self, images: Sequence[str]) -> dict[str, ImageVerdict]:
        verdicts: dict[str, ImageVerdict] = {}
        pending: dict[str, Reference] = {}
        for image in images:
            try:
                reference = _comparable(with_default_tag(parse(image)))
            except InvalidReference as exc:
                # The parser's reason names the text as written, except for its lowercase rule.
                said = str(exc) if image in str(exc) else f"{image!r}: {exc}"
                verdicts[image] = ImageVerdict(Status.INVALID, f"not a valid image reference: {said}")
                continue
            if self.catalog.entry_for(reference.repository) is not None:
                # A catalog image run as it is (a developer running the base itself).
                verdicts[image] = _verdict(f"image {image}:", self.catalog.judge(reference))
            else:
                pending[image] = reference
        found = self._artifacts(pending)
        lineages = self._lineages({pk for pks in found.values() for pk in pks})
        for image in pending:
            verdicts[image] = self._by_lineage(image, found.get(image, set()), lineages)
        return verdicts

    def _candidates(self, reference: Reference) -> set[tuple[int, str]]:
        return {
            (place.registry_id, name)
            for place in self.places.get(reference.domain, ())
            for name in place.names(reference.domain, reference.path)
        }

    def _artifacts(self, references: Mapping[str, Reference]) -> dict[str, set[int]]:
        """Image → ids of the artifacts it names: by digest when it has one (the digest wins over
        a tag written beside it), else through the tag."""
        wanted = {image: self._candidates(reference) for image, reference in references.items()}
        by_digest = {i: r for i, r in references.items() if r.digest and wanted[i]}
        by_tag = {i: r for i, r in references.items() if not r.digest and r.tag and wanted[i]}
        found: dict[str, set[int]] = defaultdict(set)
        if by_digest:
            rows = _in_repositories(
                Artifact.objects.filter(digest__in={r.digest for r in by_digest.values()}),
                wanted,
                by_digest,
            ).values_list("pk", "digest", "repository__registry_id", "repository__name")
            for pk, digest, registry_id, name in rows:
                for image, reference in by_digest.items():
                    if reference.digest == digest and (registry_id, name) in wanted[image]:
                        found[image].add(pk)
        if by_tag:
            tags = _in_repositories(
                Tag.objects.filter(name__in={r.tag for r in by_tag.values()}), wanted, by_tag
            ).values_list("artifact_id", "name", "repository__registry_id", "repository__name")
            for pk, tag, registry_id, name in tags:
                for image, reference in by_tag.items():
                    if reference.tag == tag and (registry_id, name) in wanted[image]:
                        found[image].add(pk)
        return found

    def _lineages(self, artifact_ids: set[int]) -> _Lineages:
        """Lineage of each artifact, and of the platform manifests of those that are indexes."""
        lineages = _Lineages()
        if not artifact_ids:
            return lineages
        rows = ArtifactLineage.objects.filter(
            Q(artifact_id__in=artifact_ids) | Q(artifact__index_id__in=artifact_ids)
        ).values_list("artifact_id", "artifact__index_id", "method", "base_reference", "base_image_id")
        for artifact_id, index_id, method, base_reference, base_image_id in rows:
            lineage = _Lineage(method, base_reference, base_image_id)
            if artifact_id in artifact_ids:
                lineages.own[artifact_id] = lineage
            if index_id in artifact_ids:
                lineages.platforms[index_id].append(lineage)
        return lineages

    def _by_lineage(self, image: str, artifact_ids: set[int], lineages: _Lineages) -> ImageVerdict:
        if not artifact_ids:
            return ImageVerdict(
                Status.UNKNOWN, f"image {image} is not in the Customs inventory, so its base is unknown"
            )
        return _worst([self._artifact_verdict(image, pk, lineages) for pk in sorted(artifact_ids)])

    def _artifact_verdict(self, image: str, artifact_id: int, lineages: _Lineages) -> ImageVerdict:
        own = lineages.own.get(artifact_id)
        base = self._base(own) if own is not None else None
        if base is not None:
            return _verdict(f"image {image}: base", base)
        # An index's own row often knows nothing (it has no layers); its platforms carry the lineage.
        bases = [self._base(row) for row in lineages.platforms.get(artifact_id, [])]
        why = "Customs could not tell" if own is not None or bases else "not decided yet"
        unknown = ImageVerdict(Status.UNKNOWN, f"image {image}: what it is built on is unknown ({why})")
        # A platform of unknown base leaves the image unknown, unless another is worse: a node may pull it.
        return _worst(
            [_verdict(f"image {image}: base", b) if b is not None else unknown for b in bases] or [unknown]
        )

    def _base(self, lineage: _Lineage) -> Judgement | None:
        """The catalog's judgement of the recorded base; None when the lineage does not know it."""
        if lineage.method == ArtifactLineage.Method.UNKNOWN:
            return None
        if lineage.base_reference:
            try:
                return self.catalog.judge(_comparable(with_default_tag(parse(lineage.base_reference))))
            except InvalidReference:
                pass  # fall back to the catalog entry, when the lineage names one
        entry = self.catalog.entry(lineage.base_image_id) if lineage.base_image_id else None
        return judge_status(entry, entry.name) if entry is not None else None


def _in_repositories(
    rows: QuerySet[_Row], wanted: Mapping[str, set[tuple[int, str]]], images: Iterable[str]
) -> QuerySet[_Row]:
    """Narrow rows that have a repository to the candidates' registries and names; the exact
    (registry, name) pairs are checked in Python, so one query serves every image."""
    pairs = {pair for image in images for pair in wanted[image]}
    return rows.filter(
        repository__registry_id__in={registry_id for registry_id, _ in pairs},
        repository__name__in={name for _, name in pairs},
    )


def _worst(verdicts: Sequence[ImageVerdict]) -> ImageVerdict:
    return max(verdicts, key=lambda verdict: SEVERITY[verdict.status])


def _verdict(prefix: str, judgement: Judgement) -> ImageVerdict:
    status = Status(judgement.verdict.value)
    message = f"{prefix} {judgement.message}"
    if status in (Status.UNAPPROVED, Status.BANNED, Status.DEPRECATED):
        if judgement.replacement and judgement.replacement not in message:
            message += f"; use {judgement.replacement} instead"
        elif not judgement.replacement and status is not Status.DEPRECATED:
            message += "; choose an approved base from the Customs base-image catalog"
    return ImageVerdict(status, message)


def _comparable(reference: Reference) -> Reference:
    """Hosts compare case-insensitively, and Docker Hub's hosts as docker.io (docs A4)."""
    return on_docker_hub(replace(reference, domain=reference.domain.lower()))


def _hosts(registry: Registry, config: Mapping[str, Any]) -> set[str]:
    """Every host an image reference may use for this registry's content."""
    urls = [registry.endpoint, config.get("url"), config.get("registry_url")]
    urls += [replica.endpoint for replica in registry.replicas.all()]
    hosts = {endpoint_host(url) for url in urls if isinstance(url, str) and url.strip()}
    if registry.kind == "gar":
        hosts |= GCR_HOSTS  # gcr.io repositories of the project serve on Google's shared hosts
    return hosts - {""}
