"""The repository browser at 100,000 repositories, next to the same pages at 1,000, in one run.

Seeds PostgreSQL (DATABASE_URL) with repository rows spread over 20 registries and 200 namespaces,
then renders the browser's common views through Django's test client and prints the median time
and query count of each at both sizes, and their ratio. Target (issue 4): the page stays fast at
100,000 repositories, with a constant number of queries per page.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from registries.models import Registry, Repository

SIZES = (1_000, int(os.environ.get("BENCH_BROWSER_REPOSITORIES", "100000")))
ROUNDS = 5
VIEWS = {
    "first page, by name": "",
    "by last push": "ordering=last_pushed",
    "by size": "ordering=size",
    "search by name": "search=repo-0042",
    "one namespace": "namespace=ns-017",
    "page 100": "page=100",
}


@contextmanager
def estate(repositories: int) -> Iterator[None]:
    prefix = f"bench-browser-{os.getpid()}-{repositories}"
    registries = Registry.objects.bulk_create(
        [
            Registry(name=f"{prefix}-{n}", kind="distribution", endpoint=f"http://127.0.0.1:{9000 + n}")
            for n in range(20)
        ]
    )
    rng, now = random.Random(7), timezone.now()  # noqa: S311
    rows = (
        Repository(
            registry=registries[n % 20],
            name=f"ns-{n % 200:03d}/repo-{n:06d}",
            namespace=f"ns-{n % 200:03d}",
            tag_count=rng.randint(0, 50),
            size=rng.randint(0, 2**31),
            last_pushed_at=now - timedelta(minutes=rng.randint(0, 10**6)),
        )
        for n in range(repositories)
    )
    try:
        with transaction.atomic():
            Repository.objects.bulk_create(rows, batch_size=5000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE registries_repository")  # plans as a real database would have them
        yield
    finally:
        Registry.objects.filter(name__startswith=prefix).delete()


def measure(client: Client, query: str) -> tuple[float, int]:
    times, queries = [], 0
    for _ in range(ROUNDS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(f"/repositories/?{query}")
            times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"/repositories/?{query} answered {response.status_code}")
        queries = len(captured)
    return statistics.median(times) * 1000, queries


def run() -> None:
    admin, _ = User.objects.get_or_create(
        username=f"bench-browser-{os.getpid()}", defaults={"is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)
    results: dict[int, dict[str, tuple[float, int]]] = {}
    try:
        for size in SIZES:
            with estate(size):
                results[size] = {name: measure(client, query) for name, query in VIEWS.items()}
    finally:
        admin.delete()
    small, large = SIZES
    print(f"repository browser, median of {ROUNDS} renders: {small:,} vs {large:,} repositories")
    for name in VIEWS:
        (ms_small, q_small), (ms_large, q_large) = results[small][name], results[large][name]
        print(
            f"  {name:20} {ms_small:7.1f} ms ({q_small} queries)   {ms_large:7.1f} ms ({q_large} queries)"
            f"   ratio {ms_large / ms_small:5.1f}"
        )
