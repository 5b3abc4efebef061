"""Effective-access questions at the issue's scale, next to the same questions at a hundredth of it.

Seeds PostgreSQL with users, groups (each person in a few), rules (exact, one-segment and deep
patterns, some expired) and repositories, then times the median answer to
  - what may this person do on this repository?
  - who may push to this repository?
and prints both sizes side by side. Target (issue 5): each single question under 50 ms (median) at
50,000 users, 5,000 groups, 20,000 rules and 100,000 repositories.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, User
from registries import effective
from registries.models import AccessRule, Registry, Repository
from registries.patterns import compile_pattern

FULL = {"users": 50_000, "groups": 5_000, "rules": 20_000, "repositories": 100_000}
SAMPLES = 200


@contextmanager
def estate(
    scale: float, tag: str, *, token_service: str = ""
) -> Iterator[tuple[Registry, list[User], list[str]]]:
    """The issue's data set times `scale`, in one registry; everything seeded is deleted on exit.

    Groups are `team-<n>` in directory `bench-<tag>` and repositories `team-<n>/svc-<i>`, so a
    benchmark may add its own groups in that directory and have them cleaned up too.
    """
    n = {key: max(10, int(value * scale)) for key, value in FULL.items()}
    rng = random.Random(11)  # noqa: S311
    registry = Registry.objects.create(
        name=f"bench-access-{tag}",
        kind="distribution",
        endpoint="https://b.test",
        token_service=token_service,
    )
    try:
        with transaction.atomic():
            groups = DirectoryGroup.objects.bulk_create(
                [
                    DirectoryGroup(
                        directory=f"bench-{tag}", external_id=f"g{i}", display_name=f"team-{i}", source="scim"
                    )
                    for i in range(n["groups"])
                ],
                batch_size=5000,
            )
            users = User.objects.bulk_create(
                [
                    User(username=f"bench-{tag}-u{i}", directory=f"bench-{tag}", external_id=f"u{i}")
                    for i in range(n["users"])
                ],
                batch_size=5000,
            )
            GroupMembership.objects.bulk_create(
                [
                    GroupMembership(user=user, group=group, source="scim")
                    for user in users
                    for group in rng.sample(groups, 4)
                ],
                batch_size=10_000,
            )
            names = [f"team-{i % n['groups']}/svc-{i}" for i in range(n["repositories"])]
            Repository.objects.bulk_create(
                [Repository(registry=registry, name=name, namespace=name.split("/")[0]) for name in names],
                batch_size=10_000,
            )
            AccessRule.objects.bulk_create(
                [_rule(rng, groups, i, n["groups"]) for i in range(n["rules"])], batch_size=10_000
            )
        with connection.cursor() as cursor:
            for table in (
                "accounts_user",
                "accounts_groupmembership",
                "registries_accessrule",
                "registries_repository",
            ):
                cursor.execute(f"ANALYZE {table}")  # noqa: S608  (fixed table names)
        yield registry, users, names
    finally:
        AccessRule.objects.filter(group__directory=f"bench-{tag}").delete()
        User.objects.filter(directory=f"bench-{tag}").delete()
        DirectoryGroup.objects.filter(directory=f"bench-{tag}").delete()
        registry.delete()


def _rule(rng: random.Random, groups: list[DirectoryGroup], i: int, group_count: int) -> AccessRule:
    team = f"team-{rng.randrange(group_count)}"
    pattern = rng.choice([f"{team}/svc-{i}", f"{team}/*", f"{team}/**", "**/base"])
    compiled = compile_pattern(pattern)
    expired = rng.random() < 0.1
    return AccessRule(
        group=rng.choice(groups),
        pattern=pattern,
        literal_prefix=compiled.literal_prefix,
        regex=compiled.anchored,
        can_pull=True,
        can_push=rng.random() < 0.3,
        justification="bench",
        expires_at=timezone.now() - timedelta(days=1) if expired else None,
    )


def median_ms(question: Callable[[], object]) -> float:
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        question()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(scale: float) -> dict[str, float]:
    tag = f"{os.getpid()}-{int(scale * 1000)}"
    with estate(scale, tag) as (registry, users, names):
        rng = random.Random(5)  # noqa: S311
        return {
            "what may this person do here?": median_ms(
                lambda: effective.user_access(rng.choice(users), registry, rng.choice(names))
            ),
            "who may push to this repository?": median_ms(
                lambda: effective.who_can(registry, rng.choice(names), "push")
            ),
        }


def run() -> None:
    small, full = measure(0.01), measure(1.0)
    print(
        f"effective access, median of {SAMPLES} questions: 1% scale vs full scale "
        f"({FULL['users']:,} users, {FULL['groups']:,} groups, {FULL['rules']:,} rules, "
        f"{FULL['repositories']:,} repositories)"
    )
    for question in full:
        print(f"  {question:34} {small[question]:6.2f} ms   {full[question]:6.2f} ms   target < 50 ms")
