"""A credential-hygiene scan at the issue's scale, next to the time of simply reading the same rows.

Seeds PostgreSQL with 10,000 people (some departed or disabled) and 100,000 registry credentials
spread over 20 registries, with every mix the rules care about: owners resolved, unknown or
missing; expiry none, unknown, near or past; last use known, never or unknown; write rights with
and without usage evidence. Then times
  - reading those credential rows (and their owners) once, as the scan reads them;
  - a first scan, which opens every finding;
  - a second scan, which refreshes them (the hourly steady state).
Target (issue 7): a scan over 100,000 credentials and 10,000 users in under 30 s.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from bench import timed
from portal import bulkread
from portal.models import Finding
from registries import hygiene
from registries.models import Credential, Registry

USERS, CREDENTIALS, REGISTRIES = 10_000, 100_000, 20
TARGET_SECONDS = 30
T = TypeVar("T")


def _credential(
    rng: random.Random, registry: Registry, i: int, people: list[User], now: datetime
) -> Credential:
    owner = rng.choice(people) if rng.random() < 0.7 else None
    reference = owner.external_id if owner else rng.choice(["ci-bot", "legacy-deployer", ""])
    created = now - timedelta(days=rng.randint(1, 900))
    expiry = rng.random()
    usage = rng.random()
    writer = rng.random() < 0.3
    return Credential(
        registry=registry,
        native_id=f"bench-{registry.pk}-{i}",
        kind=rng.choice(["robot", "access_token", "access_key", "service_account_key"]),
        name=f"cred-{i}",
        enabled=rng.random() < 0.95,
        owner_kind="user" if owner or reference else "",
        owner_id=reference,
        owner_name=owner.username if owner else reference,
        owner_user=owner,
        created_at=created if rng.random() < 0.95 else None,
        expires_at=None if expiry < 0.3 else now + timedelta(days=rng.randint(-60, 400)),
        expiry_known=expiry >= 0.1,
        last_used_at=None if usage < 0.3 else now - timedelta(days=rng.randint(0, 200)),
        usage_known=usage >= 0.15,
        last_used_source="registry",
        actions=["pull", "push"] if writer else ["pull"],
        actions_seen={"pull": (now - timedelta(days=rng.randint(0, 30))).isoformat()} if writer else {},
        actions_seen_source="audit log" if writer else "",
        shared_admin=i % 5000 == 0,
    )


@contextmanager
def estate(tag: str) -> Iterator[list[Registry]]:
    """The issue's data set; everything seeded (and every finding about it) is deleted on exit."""
    rng = random.Random(7)  # noqa: S311
    now = timezone.now()
    statuses = [User.Status.ACTIVE] * 18 + [User.Status.DEPARTED, User.Status.DISABLED]
    registries: list[Registry] = []
    try:
        with transaction.atomic():
            people = User.objects.bulk_create(
                [
                    User(
                        username=f"bench-{tag}-{i}",
                        directory=f"bench-{tag}",
                        external_id=f"oid-{tag}-{i}",
                        status=rng.choice(statuses),
                    )
                    for i in range(USERS)
                ],
                batch_size=5000,
            )
            registries = [
                Registry.objects.create(
                    name=f"bench-hygiene-{tag}-{n}", kind="harbor", endpoint="https://h.test"
                )
                for n in range(REGISTRIES)
            ]
            per_registry = CREDENTIALS // REGISTRIES
            for registry in registries:
                Credential.objects.bulk_create(
                    [_credential(rng, registry, i, people, now) for i in range(per_registry)], batch_size=5000
                )
        yield registries
    finally:
        scopes = [f"registry-{registry.pk}" for registry in registries]
        Finding.objects.filter(scope__in=scopes).delete()
        Registry.objects.filter(pk__in=[registry.pk for registry in registries]).delete()
        User.objects.filter(directory=f"bench-{tag}").delete()


def _read_once() -> int:
    """The floor: every row the scan needs, read once, nothing decided or written."""
    rows = 0
    for _ in bulkread.rows(Credential.objects.present().order_by(), hygiene.FACT_FIELDS):
        rows += 1
    list(User.objects.values_list("pk", "username", "display_name", "status").iterator(hygiene.CHUNK))
    return rows


def run() -> None:
    with estate(str(os.getpid())):
        read_seconds, rows = timed(_read_once)
        first_seconds, first = timed(hygiene.scan)
        second_seconds, _ = timed(hygiene.scan)
        _report(rows, (read_seconds, first_seconds, second_seconds), first)
        print("  (removing the seeded rows)", flush=True)


def _report(rows: int, seconds: tuple[float, float, float], first: hygiene.ScanResult) -> None:
    read_seconds, first_seconds, second_seconds = seconds
    opened = sum(result.opened for result in first.by_kind.values())
    print(
        f"credential-hygiene scan: {first.credentials:,} credentials (read {rows:,} rows), "
        f"{USERS:,} people, {REGISTRIES} registries"
    )
    print(f"  read the rows once          {read_seconds:6.2f} s   1.00x")
    print(
        f"  first scan (opens {opened:,})  {first_seconds:6.2f} s   {first_seconds / read_seconds:5.2f}x"
        f"   target < {TARGET_SECONDS} s",
        flush=True,
    )
    print(
        f"  second scan (refreshes)     {second_seconds:6.2f} s   {second_seconds / read_seconds:5.2f}x"
        f"   target < {TARGET_SECONDS} s",
        flush=True,
    )
