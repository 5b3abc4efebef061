"""Copy an image, every platform of it and its referrers, from an upstream registry into regional mirrors.

A copy runs in four steps, all over the OCI Distribution API:

1. Plan: the reference becomes a digest, and every manifest is fetched by digest and checked
   against it: the index, each platform, nested indexes, and each referrer (signatures,
   attestations), found upstream through the referrers API or, where the registry has none
   (distribution 2.8), through its `sha256-<hex>` tag schema. Manifests a region already holds
   are read from that region, so a copy that finds nothing new GETs no manifest upstream.
2. Survey (each region, in parallel): which manifests are there already (a registry refuses a
   manifest whose blobs are missing, so those blobs are there too), which blobs are (HEAD), and
   which can be mounted from another repository of the same registry.
3. Transfer: each blob some region lacks is read from upstream once and teed to every region that
   needs it (see _transfer). The bytes are hashed as they pass; a mismatch aborts that blob
   everywhere before any region commits it.
4. Publish (each region): manifests by digest, children first; referrers and their tag-schema
   index; the tag last. A tag therefore only ever names an image that is complete in that region,
   and a copy cut short leaves finished blobs behind for the next run to skip.

A region that fails (down, refusing our credentials) fails alone: its DestinationResult carries the
reason and the others go on. Trouble upstream fails every region at once, so it is raised.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import requests

from portal.http import OutboundError, PermanentError
from registries.connectors.base import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, OCI_INDEX
from registries.connectors.errors import NotFoundError
from registries.demo.images import canonical_json
from registries.mirror.client import (
    DigestMismatch,
    Endpoint,
    Manifest,
    RepositoryClient,
    digest_of,
    hasher_for,
    is_digest,
)

logger = logging.getLogger(__name__)

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # the distribution spec's tag grammar

# Memory: each blob in flight holds at most one chunk in the reader plus QUEUE_CHUNKS per region
# plus one being sent per region, whatever the blob's or the image's size. With the defaults and
# two regions that is 3 x (1 + 2 x (4 + 1)) x 1 MiB = 33 MiB at most.
CHUNK_SIZE = 2**20
QUEUE_CHUNKS = 4
BLOB_CONCURRENCY = 3  # blobs in flight at once: hides per-request latency without more memory per blob
PROBE_CONCURRENCY = 8  # HEAD requests in flight per region during the survey
MOUNT_PROBES = 4  # `mount_from` repositories asked about each missing blob, in the order given

Progress = Callable[[str], None]


@dataclass
class DestinationResult:
    """What one copy did in one region; `error` is empty on success, and `digest` is what the tag names."""

    endpoint: Endpoint
    digest: str = ""  # the top-level digest now tagged there ("" if failed)
    blobs_copied: int = 0  # uploaded by this run
    blobs_skipped: int = 0  # already there
    blobs_mounted: int = 0  # mounted from another repository of the same registry
    bytes_sent: int = 0  # blob bytes put on the wire to this region, aborted uploads included
    manifests_pushed: int = 0  # manifest PUTs, the tag and tag-schema indexes included
    referrers_copied: int = 0  # referrer manifests (signatures, attestations) pushed
    error: str = ""
    # The typed error behind `error`: TransientError is worth retrying, AuthError needs a person.
    failure: OutboundError | None = field(default=None, repr=False, compare=False)


def resolve(source: Endpoint, tag: str) -> str:
    """The digest `tag` points at upstream, from a HEAD (no body; Docker Hub does not count it as a pull)."""
    return _resolve(RepositoryClient(source, actions="pull"), tag)


def _resolve(upstream: RepositoryClient, tag: str) -> str:
    if is_digest(tag):
        return tag
    digest = upstream.manifest_digest(tag)
    if digest is None:
        raise NotFoundError(f"{upstream.endpoint}:{tag} does not exist")
    return digest


def copy_image(
    source: Endpoint,
    reference: str,
    destinations: list[Endpoint],
    *,
    tag: str | None = None,
    progress: Progress | None = None,
    reader: RepositoryClient | None = None,
) -> list[DestinationResult]:
    """Copy `reference` (a tag or a digest) from `source` into every destination; one result each, in order.

    The destinations get the image under `tag`, which defaults to `reference` when that is a tag;
    a digest with no tag is copied untagged. Raises the connector errors (NotFoundError,
    AuthError, TransientError, DigestMismatch…) for trouble upstream; a destination's trouble is
    its result's `error`. `progress` gets one-line messages, one call at a time, from any thread.
    `reader`, a client the caller already holds for `source`, saves signing in upstream again.
    """
    say = _Reporter(progress)
    for name in (reference, tag):
        if name is not None and not is_digest(name) and not _TAG.fullmatch(name):
            raise ValueError(f"{name!r} is neither a tag nor a digest")
    if not destinations:
        return []
    upstream = reader or RepositoryClient(source, actions="pull")
    if is_digest(reference):
        digest = reference
    else:
        digest = _resolve(upstream, reference)
        tag = reference if tag is None else tag
        say(f"{source}:{reference} is {digest}")
    regions = [_Region(endpoint, source, say) for endpoint in destinations]
    try:
        _in_parallel(regions, lambda region: region.check_holds(digest))
        holding = [region.client for region in regions if region.holds_top]
        plan = _plan(upstream, digest, say, holding)
        say(
            f"{len(plan.nodes)} manifests, {len(plan.blobs)} blobs ({_mib(plan.size)}), "
            f"{len(plan.referrer_digests)} referrers"
        )
        _in_parallel(regions, lambda region: region.survey(plan))
        _transfer_all(upstream, plan, regions)
        _in_parallel(regions, lambda region: region.publish(plan, tag))
    finally:
        for region in regions:
            region.senders.shutdown(wait=True)
    return [region.result for region in regions]


# --- the plan: everything upstream, by digest ---------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class _Node:
    """One manifest to copy, and what it references directly."""

    manifest: Manifest
    blobs: tuple[_Blob, ...] = ()
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Referrers:
    """The referrers of one subject, as descriptors for a tag-schema index."""

    subject: str
    descriptors: tuple[dict[str, Any], ...]


@dataclass
class _Plan:
    digest: str
    # Insertion order is push order: every manifest after what it references, the image's own
    # manifests before any referrer's.
    nodes: dict[str, _Node] = field(default_factory=dict)
    referrers: list[_Referrers] = field(default_factory=list)
    referrer_digests: set[str] = field(default_factory=set)

    @property
    def blobs(self) -> dict[str, _Blob]:
        return {blob.digest: blob for node in self.nodes.values() for blob in node.blobs}

    @property
    def size(self) -> int:
        return sum(blob.size for blob in self.blobs.values())

    def blobs_under(self, digest: str) -> set[str]:
        """Every blob digest reachable from the manifest `digest`."""
        node = self.nodes[digest]
        found = {blob.digest for blob in node.blobs}
        for child in node.children:
            found |= self.blobs_under(child)
        return found


def _plan(
    upstream: RepositoryClient, digest: str, say: _Reporter, holding: Sequence[RepositoryClient]
) -> _Plan:
    """Every manifest of the image and its referrers, fetched by digest and checked against it.

    `holding` are regions that already have the image: a manifest is the same bytes wherever it
    is stored, so those are read from a region when it can. Docker Hub counts each manifest GET as
    a pull against the rate limit, and a mirror job that finds nothing new should spend none.
    Referrers are always asked of the upstream, where new signatures appear.
    """
    plan = _Plan(digest)
    fetch = partial(_fetch, [*holding, upstream])
    _walk(fetch, upstream, plan, digest)
    pending = list(plan.nodes)
    referrers_api: list[bool] = []  # learnt from the first subject asked about
    while pending:
        subject = pending.pop(0)
        descriptors = _referrers_of(upstream, subject, referrers_api)
        kept = []
        for descriptor in descriptors:
            before = set(plan.nodes)
            try:
                _walk(fetch, upstream, plan, descriptor["digest"])
            except NotFoundError:
                # A tag-schema index is kept by clients, not the registry, and may list a manifest
                # deleted since; the image is fine without it.
                say(f"referrer {descriptor['digest']} of {subject} is listed but gone upstream; skipped")
                continue
            kept.append(descriptor)
            plan.referrer_digests.add(descriptor["digest"])
            pending += [each for each in plan.nodes if each not in before]  # signatures of an SBOM, say
        if kept:
            plan.referrers.append(_Referrers(subject, tuple(kept)))
    return plan


def _fetch(readers: Sequence[RepositoryClient], digest: str) -> Manifest:
    """The manifest from the first reader that has it intact; the last reader's failure is raised."""
    for reader in readers[:-1]:
        try:
            return reader.get_manifest(digest)
        except OutboundError:
            continue  # not there (a referrer new upstream, say), or unreadable: ask the next one
    return readers[-1].get_manifest(digest)


def _walk(fetch: Callable[[str], Manifest], upstream: RepositoryClient, plan: _Plan, digest: str) -> None:
    """Fetch `digest` and everything it references into the plan, children first."""
    if digest in plan.nodes:
        return
    fetched = fetch(digest)
    document = fetched.json()
    media_type = str(document.get("mediaType") or fetched.media_type)
    manifest = Manifest(digest, media_type, fetched.data)
    if media_type in INDEX_MEDIA_TYPES:
        children = tuple(_descriptor(each, digest)["digest"] for each in document.get("manifests") or [])
        for child in children:
            _walk(fetch, upstream, plan, child)
        plan.nodes[digest] = _Node(manifest, children=children)
    elif media_type in MANIFEST_MEDIA_TYPES:
        described = [document.get("config"), *(document.get("layers") or [])]
        blobs = tuple(
            _Blob(each["digest"], int(each["size"]))
            for each in (_descriptor(entry, digest) for entry in described)
            # Foreign (non-distributable) layers live at their `urls`, not in registries; skopeo
            # leaves them behind too, and registries accept manifests naming them.
            if not each.get("urls")
        )
        plan.nodes[digest] = _Node(manifest, blobs=blobs)
    else:
        raise PermanentError(
            f"{upstream.endpoint}@{digest} is a {media_type or 'schema1'} manifest, which is not copied"
        )


def _descriptor(entry: object, parent: str) -> dict[str, Any]:
    if (
        not isinstance(entry, dict)
        or not is_digest(str(entry.get("digest", "")))
        or not isinstance(entry.get("size"), int)
    ):
        raise PermanentError(f"manifest {parent} holds a malformed descriptor")
    return entry


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: `sha256:abc…` is listed under the tag `sha256-abc…`."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"[:128]  # tags are at most 128 characters


def _referrers_of(upstream: RepositoryClient, subject: str, api: list[bool]) -> list[dict[str, Any]]:
    if not api or api[0]:
        listed = upstream.referrers(subject)
        if not api:
            api.append(listed is not None)
        if listed is not None:
            return [_descriptor(each, subject) for each in listed]
    try:
        index = upstream.get_manifest(fallback_tag(subject), accept=OCI_INDEX)
    except NotFoundError:
        return []
    return [_descriptor(each, subject) for each in index.json().get("manifests") or []]


# --- each region ------------------------------------------------------------------------------------


class _Region:
    """One destination: its client, its running result, and what the survey found missing there."""

    def __init__(self, endpoint: Endpoint, source: Endpoint, say: _Reporter) -> None:
        self.client = RepositoryClient(endpoint, actions="pull,push")
        self.result = DestinationResult(endpoint)
        self.say = say
        self.present: set[str] = set()  # manifests already there
        self.holds_top = False  # the image's own manifest is there, so (registries check) all it names
        # Blobs to upload, each with the upload a failed mount already opened (or "").
        self.uploads: dict[str, str] = {}
        self.referrers_api: bool | None = None
        self.senders = ThreadPoolExecutor(BLOB_CONCURRENCY, thread_name_prefix=f"mirror-{endpoint.host}")
        self._lock = threading.Lock()
        self._mount_candidates = list(endpoint.mount_from)
        if source.base_url == endpoint.base_url and source.repository != endpoint.repository:
            self._mount_candidates.append(source.repository)  # same registry: mount from upstream itself

    @property
    def failed(self) -> bool:
        return bool(self.result.error)

    def fail(self, error: OutboundError) -> None:
        with self._lock:
            if self.result.error:
                return
            self.result.error = str(error) or type(error).__name__
            self.result.failure, self.result.digest = error, ""
        self.say(f"{self.result.endpoint}: failed: {self.result.error}")

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self.result, name, getattr(self.result, name) + value)

    def guarded(self, work: Callable[[], None]) -> None:
        """Run one step; a failure becomes this region's error instead of the whole copy's."""
        if self.failed:
            return
        try:
            work()
        except OutboundError as exc:
            self.fail(exc)
        except requests.RequestException as exc:  # a malformed URL, say: nothing the session wrapped
            self.fail(PermanentError(f"{self.result.endpoint}: {type(exc).__name__}"))

    # --- survey -----------------------------------------------------------------------------------

    def check_holds(self, digest: str) -> None:
        self.holds_top = self.client.has_manifest(digest)

    def survey(self, plan: _Plan) -> None:
        with ThreadPoolExecutor(PROBE_CONCURRENCY) as probes:
            here = list(probes.map(self.client.has_manifest, plan.nodes))
            self.present = {digest for digest, found in zip(plan.nodes, here, strict=True) if found}
            covered: set[str] = set()
            for digest in self.present:
                covered |= plan.blobs_under(digest)
            unknown = [blob for digest, blob in plan.blobs.items() if digest not in covered]
            there = list(probes.map(lambda blob: self.client.has_blob(blob.digest), unknown))
            missing = [blob for blob, found in zip(unknown, there, strict=True) if not found]
            self.add(blobs_skipped=len(plan.blobs) - len(missing))
            opened = list(probes.map(self._mount, missing))
        self.uploads = {
            blob.digest: location
            for blob, (mounted, location) in zip(missing, opened, strict=True)
            if not mounted
        }
        upload_bytes = sum(blob.size for blob in missing if blob.digest in self.uploads)
        self.say(
            f"{self.result.endpoint}: {len(self.present)} of {len(plan.nodes)} manifests there, "
            f"{self.result.blobs_skipped} blobs there, {self.result.blobs_mounted} mounted, "
            f"{len(self.uploads)} to upload ({_mib(upload_bytes)})"
        )

    def _mount(self, blob: _Blob) -> tuple[bool, str]:
        """(mounted, upload already opened or "")."""
        for candidate in self._mount_candidates[:MOUNT_PROBES]:
            try:
                found = self.client.has_blob(blob.digest, repository=candidate)
            except PermanentError:
                continue  # a repository we may not read (401) or that is gone: not a source for mounts
            if not found:
                continue
            mounted, location = self.client.start_upload(mount=blob.digest, source=candidate)
            if mounted:
                self.add(blobs_mounted=1)
                self.say(f"{self.result.endpoint}: mounted {_short(blob.digest)} from {candidate}")
            return mounted, location  # 202: the registry would not mount, and opened an upload instead
        return False, ""

    # --- publish ----------------------------------------------------------------------------------

    def publish(self, plan: _Plan, tag: str | None) -> None:
        for digest, node in plan.nodes.items():
            if digest == plan.digest or digest in self.present:
                continue  # the top manifest goes last, with the tag
            response = self.client.put_manifest(digest, node.manifest)
            if response.headers.get("OCI-Subject"):
                self.referrers_api = True  # the registry indexes referrers itself
            is_referrer = digest in plan.referrer_digests
            self.add(manifests_pushed=1, referrers_copied=int(is_referrer))
        self._publish_referrer_tags(plan)
        top = plan.nodes[plan.digest].manifest
        if tag:
            if self.client.manifest_digest(tag) != plan.digest:
                self.client.put_manifest(tag, top)
                self.add(manifests_pushed=1)
            self.say(f"{self.result.endpoint}:{tag} is {plan.digest}")
        elif plan.digest not in self.present:
            self.client.put_manifest(plan.digest, top)
            self.add(manifests_pushed=1)
            self.say(f"{self.result.endpoint}@{plan.digest} is there (untagged)")
        with self._lock:
            self.result.digest = plan.digest

    def _publish_referrer_tags(self, plan: _Plan) -> None:
        """Without a referrers API, clients read the subject's `sha256-<hex>` index: make it list ours."""
        if not plan.referrers:
            return
        if self.referrers_api is None:
            self.referrers_api = self.client.referrers(plan.digest) is not None
        if self.referrers_api:
            return
        for group in plan.referrers:
            tag = fallback_tag(group.subject)
            try:
                listed = [
                    each
                    for each in self.client.get_manifest(tag, accept=OCI_INDEX).json().get("manifests") or []
                ]
            except NotFoundError:
                listed = []
            known = {each.get("digest") for each in listed if isinstance(each, dict)}
            added = [each for each in group.descriptors if each["digest"] not in known]
            if not added:
                continue
            # Others' referrers stay listed: the index belongs to every client that signs this subject.
            data = canonical_json(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*listed, *added]}
            )
            self.client.put_manifest(tag, Manifest(digest_of(data), OCI_INDEX, data))
            self.add(manifests_pushed=1)


def _in_parallel(regions: Sequence[_Region], step: Callable[[_Region], None]) -> None:
    with ThreadPoolExecutor(len(regions), thread_name_prefix="mirror-region") as pool:
        for done in [pool.submit(region.guarded, partial(step, region)) for region in regions]:
            done.result()  # a bug (not an OutboundError) still surfaces


# --- the transfer: read once, tee to every region -----------------------------------------------------


_END = object()  # the blob is complete and verified: commit it
_ABORT = object()  # the blob is bad or upstream broke: commit nothing


class _Aborted(Exception):
    """Raised inside a region's upload body, so the upload stops without being committed."""


class _Cancelled(Exception):
    """Another blob failed upstream; this one stops too, since the copy will be raised as failed."""


class _Sink:
    """One region's side of one blob: a bounded queue of chunks, drained by an upload running in a thread."""

    def __init__(self, region: _Region, blob: _Blob) -> None:
        self.region, self.blob = region, blob
        self.chunks: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.closed = threading.Event()  # the upload stopped taking chunks, for good or ill
        self.verified = False  # _END arrived: every byte hashed to the digest

    def offer(self, item: object) -> bool:
        """Queue a chunk (or _END/_ABORT), waiting while the upload is behind; False once it has stopped."""
        while not self.closed.is_set():
            try:
                self.chunks.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def body(self) -> Iterator[bytes]:
        while True:
            item = self.chunks.get()
            if item is _END:
                self.verified = True
                return
            if item is _ABORT:
                raise _Aborted
            assert isinstance(item, bytes)
            self.region.add(bytes_sent=len(item))
            yield item

    def run(self) -> None:
        region, blob, location = self.region, self.blob, ""
        try:
            if region.failed:
                return
            location = region.uploads.get(blob.digest) or region.client.start_upload()[1]
            if blob.size:
                # The body ends at _END, which the reader offers only after the whole blob hashed
                # right; so the PATCH itself completes only for a good blob.
                location = region.client.send_chunk(location, self.body(), blob.size)
            if not self.verified:
                for _ in self.body():
                    pass  # an empty blob: wait for the verdict all the same
            region.client.commit_upload(location, blob.digest)
            region.add(blobs_copied=1)
            region.say(f"{region.result.endpoint}: uploaded {_short(blob.digest)} ({_mib(blob.size)})")
            location = ""
        except _Aborted:
            pass
        except OutboundError as exc:
            region.fail(exc)
        except requests.RequestException as exc:
            region.fail(PermanentError(f"{region.result.endpoint}: {type(exc).__name__}"))
        finally:
            self.closed.set()
            self._drain()
            if location:
                region.client.cancel_upload(location)

    def _drain(self) -> None:
        # Free the chunks waiting here, so a failed region holds no memory and blocks no reader.
        while True:
            try:
                self.chunks.get_nowait()
            except queue.Empty:
                return


def _transfer_all(upstream: RepositoryClient, plan: _Plan, regions: Sequence[_Region]) -> None:
    """Every blob some region must upload, BLOB_CONCURRENCY at a time, largest first (shortest tail)."""
    wanted = sorted(plan.blobs.values(), key=lambda blob: blob.size, reverse=True)
    work = [(blob, [r for r in regions if blob.digest in r.uploads]) for blob in wanted]
    work = [(blob, targets) for blob, targets in work if targets]
    if not work:
        return
    cancelled = threading.Event()
    with ThreadPoolExecutor(BLOB_CONCURRENCY, thread_name_prefix="mirror-read") as readers:
        futures = [readers.submit(_transfer, upstream, blob, targets, cancelled) for blob, targets in work]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() for future in done):
            cancelled.set()  # stop the other blobs early: the copy is failing anyway
        wait(futures)
    _raise_first(futures)


def _raise_first(futures: Sequence[Future[None]]) -> None:
    errors = [future.exception() for future in futures]
    real = [error for error in errors if error is not None and not isinstance(error, _Cancelled)]
    if real:
        raise real[0]


def _transfer(
    upstream: RepositoryClient, blob: _Blob, targets: Sequence[_Region], cancelled: threading.Event
) -> None:
    """Read `blob` from upstream once, and stream it into every target region at the same time.

    Each region's upload runs in its own thread and takes chunks from a bounded queue, so memory
    stays a few chunks per region whatever the blob's size, and the slowest region sets the pace
    (the price of reading once). A region that fails stops taking chunks and the others go on;
    when none is left, reading stops. The final chunk is offered only after the whole blob has
    hashed to its digest, and the uploads commit only after that: a bad blob is committed nowhere.
    """
    sinks = [_Sink(region, blob) for region in targets if not region.failed]
    if not sinks:
        return
    uploads = [sink.region.senders.submit(sink.run) for sink in sinks]
    try:
        _pump(upstream, blob, sinks, cancelled)
    except BaseException:
        for sink in sinks:
            sink.offer(_ABORT)
        raise
    else:
        for sink in sinks:
            sink.offer(_END)
    finally:
        wait(uploads)


def _pump(
    upstream: RepositoryClient, blob: _Blob, sinks: Sequence[_Sink], cancelled: threading.Event
) -> None:
    if cancelled.is_set():
        raise _Cancelled
    hasher, received = hasher_for(blob.digest), 0
    chunks = upstream.blob_chunks(blob.digest, CHUNK_SIZE)
    try:
        for chunk in chunks:
            if cancelled.is_set():
                raise _Cancelled
            received += len(chunk)
            if received > blob.size:
                raise DigestMismatch(
                    f"{upstream.endpoint}: {blob.digest} is longer than its {blob.size} bytes"
                )
            hasher.update(chunk)
            if received == blob.size:
                _verify(upstream, blob, hasher)
            if not [sink for sink in sinks if sink.offer(chunk)]:
                return  # every region has failed: nobody wants the rest
    finally:
        chunks.close()  # releases the connection even when we stop early
    if received != blob.size:
        raise DigestMismatch(
            f"{upstream.endpoint}: {blob.digest} ended after {received} of {blob.size} bytes"
        )
    _verify(upstream, blob, hasher)


def _verify(upstream: RepositoryClient, blob: _Blob, hasher: Any) -> None:
    actual = f"{blob.digest.partition(':')[0]}:{hasher.hexdigest()}"
    if actual != blob.digest:
        raise DigestMismatch(f"{upstream.endpoint}: {blob.digest} arrived as {actual}; not copied")


# --- reporting ----------------------------------------------------------------------------------------


class _Reporter:
    """Calls `progress` one message at a time, from whichever thread has news."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        logger.debug("mirror: %s", message)
        if self._progress:
            with self._lock:
                self._progress(message)


def _short(digest: str) -> str:
    return digest[:19]


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


__all__ = [
    "DestinationResult",
    "DigestMismatch",
    "Endpoint",
    "copy_image",
    "fallback_tag",
    "resolve",
]
