"""Lineage at the issue's scale, next to the time of simply reading the same artifacts.

Seeds PostgreSQL with a catalog of 50 entries and 200 catalog images (ten operating-system bases and
forty runtimes built on them, so shorter chains prefix longer ones; half the runtimes kept only in a
regional mirror) and 100,000 artifacts in one application registry: images built on a catalog image
with a few layers of their own, some annotated with their base (a few invalidly), multi-platform
indexes with their platform and attestation manifests, and images built on nothing the catalog
knows. Then times
  - reading those artifacts once, the columns lineage reads (the floor);
  - a first refresh, which decides every artifact, writes every lineage row and opens the findings;
  - a second refresh, which decides again, writes nothing and refreshes the findings (steady state).
Target (issue 9): a refresh at most 3x the read.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone

from bench import timed
from portal import bulkread
from portal.models import Finding
from registries.models import Artifact, ArtifactLineage, BaseImage, BaseImageMirror, Registry, Repository, Tag
from registries.policy import lineage

ARTIFACTS, CATALOG_IMAGES, REPOSITORIES = 100_000, 200, 1_000
OS_ENTRIES, RUNTIME_ENTRIES, IMAGES_PER_ENTRY = 10, 40, 4
INDEXES = 3_000  # each with two platform manifests and an attestation manifest: 12,000 rows
TARGET_RATIO = 3.0
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LABELS = {
    "org.opencontainers.image.source": "https://git.example.test/team/app",
    "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
    "org.opencontainers.image.vendor": "Example",
    "maintainer": "team@example.test",
}
T = TypeVar("T")


class Digests:
    """Distinct, well-formed sha256 digests without hashing: a counter in hex."""

    def __init__(self) -> None:
        self._next = 1

    def __call__(self) -> str:
        self._next += 1
        return f"sha256:{self._next:064x}"

    def chain(self, length: int) -> list[str]:
        return [self() for _ in range(length)]


@contextmanager
def estate(tag: str) -> Iterator[Registry]:
    """The data set; everything seeded (and every finding about it) is deleted on exit."""
    rng = random.Random(9)  # noqa: S311
    digest = Digests()
    now = timezone.now()
    made: list[Registry] = []
    entries: list[BaseImage] = []
    try:
        with transaction.atomic():
            catalog, mirror, apps = (
                Registry.objects.create(
                    name=f"bench-lineage-{tag}-{n}", kind="harbor", endpoint=f"https://{n}.{tag}.test"
                )
                for n in ("base", "mirror", "apps")
            )
            made = [catalog, mirror, apps]
            entries, images = _catalog(rng, digest, tag, catalog, mirror, now)
            _applications(rng, digest, apps, images, entries, now)
        _analyze()
        yield apps
    finally:
        Finding.objects.filter(scope__in=[f"registry-{registry.pk}" for registry in made]).delete()
        Registry.objects.filter(pk__in=[registry.pk for registry in made]).delete()
        BaseImage.objects.filter(pk__in=[entry.pk for entry in entries]).delete()


def _analyze() -> None:
    # A live estate's tables have planner statistics (autovacuum keeps them); tables just filled by a
    # bulk seed do not, and the planner then scans 100,000 rows to find the 200 catalog images.
    tables = [model._meta.db_table for model in (Artifact, Repository, Tag, ArtifactLineage)]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")


def _catalog(
    rng: random.Random, digest: Digests, tag: str, catalog: Registry, mirror: Registry, now: datetime
) -> tuple[list[BaseImage], list[tuple[BaseImage, Artifact]]]:
    """50 entries, 4 images each: operating systems first, runtimes on top of one of their images."""
    entries: list[BaseImage] = []
    images: list[tuple[BaseImage, Artifact]] = []
    statuses = ["approved"] * 7 + ["deprecated", "banned"]
    for number in range(OS_ENTRIES + RUNTIME_ENTRIES):
        runtime = number >= OS_ENTRIES
        name = f"{'runtime' if runtime else 'os'}-{number}"
        entry = BaseImage.objects.create(
            name=f"base.{tag}.test/{name}",
            status=rng.choice(statuses),
            replacement=f"base.{tag}.test/os-0:1" if number else "",
            max_age_days=rng.choice([None, 90, 365]),
        )
        entries.append(entry)
        in_mirror = runtime and number % 2 == 0
        registry = mirror if in_mirror else catalog
        if in_mirror:
            BaseImageMirror.objects.create(base_image=entry, registry=registry, repository=f"cache/{name}")
        repository = Repository.objects.create(registry=registry, name=f"cache/{name}" if in_mirror else name)
        for version in range(IMAGES_PER_ENTRY):
            below = rng.choice(images[: OS_ENTRIES * IMAGES_PER_ENTRY])[1].diff_ids if runtime else []
            artifact = Artifact.objects.create(
                repository=repository,
                digest=digest(),
                media_type=MANIFEST_TYPE,
                platform="linux/amd64",
                diff_ids=below + digest.chain(rng.randint(2, 3)),
                created=now - timedelta(days=rng.randint(1, 500)),
            )
            Tag.objects.create(repository=repository, artifact=artifact, name=f"{version + 1}")
            images.append((entry, artifact))
    assert len(images) == CATALOG_IMAGES
    return entries, images


def _applications(
    rng: random.Random,
    digest: Digests,
    apps: Registry,
    images: list[tuple[BaseImage, Artifact]],
    entries: list[BaseImage],
    now: datetime,
) -> None:
    repositories = Repository.objects.bulk_create(
        [Repository(registry=apps, name=f"team-{n % 50}/app-{n}") for n in range(REPOSITORIES)]
    )

    def image(repository: Repository, **fields: Any) -> Artifact:
        kind = rng.random()
        base = rng.choice(images)
        layers = digest.chain(rng.randint(1, 5))
        fields.setdefault("platform", "linux/amd64")
        if kind < 0.15:
            chain = digest.chain(rng.randint(3, 8))  # built on nothing the catalog holds
        elif kind < 0.25:
            chain = base[1].diff_ids + layers
            fields.update(base_name=f"{base[0].name}:{rng.randint(1, 4)}", base_digest=base[1].digest)
        elif kind < 0.27:
            chain = base[1].diff_ids + layers
            fields.update(base_name="Not A Reference:1")
        else:
            chain = base[1].diff_ids + layers
        return Artifact(
            repository=repository,
            digest=digest(),
            media_type=MANIFEST_TYPE,
            diff_ids=chain,
            layer_digests=digest.chain(len(chain)),
            labels=LABELS,
            created=now - timedelta(days=rng.randint(0, 200)),
            **fields,
        )

    indexes = Artifact.objects.bulk_create(
        [
            Artifact(repository=rng.choice(repositories), digest=digest(), media_type=INDEX_TYPE)
            for _ in range(INDEXES)
        ],
        batch_size=5000,
    )
    rows = []
    for index in indexes:
        rows.append(image(index.repository, index=index, platform="linux/amd64"))
        rows.append(image(index.repository, index=index, platform="linux/arm64"))
        rows.append(
            Artifact(
                repository=index.repository,
                index=index,
                digest=digest(),
                media_type=MANIFEST_TYPE,
                platform="unknown/unknown",
                diff_ids=digest.chain(1),
            )
        )
    rows += [image(rng.choice(repositories)) for _ in range(ARTIFACTS - INDEXES - len(rows))]
    Artifact.objects.bulk_create(rows, batch_size=5000)


def _read_once(registry: Registry) -> int:
    """The floor: every artifact row lineage reads, read once, nothing decided or written."""
    rows = 0
    for _ in bulkread.rows(
        Artifact.objects.filter(repository__registry=registry).order_by(), lineage.FACT_FIELDS
    ):
        rows += 1
    return rows


def run() -> None:
    with estate(str(os.getpid())) as apps:
        read_seconds, rows = timed(lambda: _read_once(apps))
        first_seconds, first = timed(lambda: lineage.refresh_lineage(apps))
        second_seconds, second = timed(lambda: lineage.refresh_lineage(apps))
        _report(rows, (read_seconds, first_seconds, second_seconds), first, second)
        print("  (removing the seeded rows)", flush=True)


def _report(
    rows: int,
    seconds: tuple[float, float, float],
    first: lineage.RefreshResult,
    second: lineage.RefreshResult,
) -> None:
    read_seconds = seconds[0]
    opened = sum(result.opened for result in first.by_kind.values())
    methods = ", ".join(f"{method} {count:,}" for method, count in sorted(first.by_method.items()))
    print(
        f"lineage: {rows:,} artifacts against {first.catalog_images} catalog images "
        f"({first.artifacts:,} decided: {methods}; {opened:,} findings)"
    )
    print(f"  read the artifacts once                       {read_seconds:6.2f} s   1.00x")
    for name, result, total in (("first", first, seconds[1]), ("second", second, seconds[2])):
        # Lineage proper is reading, deciding and storing; the findings engine (portal/findings.py)
        # then reconciles what the decisions call for, and is shown apart.
        decide, store = result.seconds["decide"], result.seconds["store"]
        own = decide + store
        print(
            f"  {name} refresh: decide {decide:5.2f} s + store {store:5.2f} s ({result.written:,} rows)"
            f" = {own:6.2f} s   {own / read_seconds:5.2f}x   target <= {TARGET_RATIO:.0f}x"
        )
        print(
            f"  {name} refresh with findings ({result.seconds['findings']:5.2f} s)     {total:6.2f} s   "
            f"{total / read_seconds:5.2f}x",
            flush=True,
        )
