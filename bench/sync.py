"""Inventory sync against a real local registry, measured against a raw HTTP baseline in one run.

Seeds a throwaway docker-registry with REPOSITORIES x TAGS images, then times
  (a) a raw baseline: the same HTTP requests with the same concurrency, storing nothing;
  (b) a full Customs sync into an empty inventory;
  (c) a re-sync with nothing changed;
and prints (b)/(a), (c)/(b) and peak Python memory for a small and the full registry.
Targets (issue 4): (b)/(a) <= 1.5, (c)/(b) <= 0.25, memory flat as the registry grows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

from registries import services, sync
from registries.connectors.distribution import ACCEPT
from registries.demo import images as im
from registries.models import Registry

REPOSITORIES = int(os.environ.get("BENCH_REPOSITORIES", "500"))
TAGS = int(os.environ.get("BENCH_TAGS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))


@contextmanager
def local_registry() -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if not binary:
        raise SystemExit("bench/sync.py needs Debian's docker-registry: apt-get install docker-registry")
    with tempfile.TemporaryDirectory() as workdir, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        config = Path(workdir) / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {workdir}/data\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench\n"
        )
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=subprocess.DEVNULL,  # noqa: S603
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait(url: str) -> None:
    for _ in range(100):
        try:
            if requests.get(f"{url}/v2/", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"the registry at {url} did not start")


def seed(url: str, repositories: int, tags: int) -> None:
    pusher = im.Pusher(url)

    def push(number: int) -> None:
        for tag in range(tags):
            image = im.base_image(f"bench-{number}", version=str(tag))
            pusher.push_image(f"bench/repo-{number:05d}", image, tags=[f"v{tag}"])

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(push, range(repositories)))


def raw_baseline(url: str) -> None:
    """What any sync must do over HTTP: catalog pages, tag lists, a HEAD per tag, manifest and config."""
    local = requests.Session()
    names: list[str] = []
    next_url: str | None = f"{url}/v2/_catalog?n=100"
    while next_url:
        response = local.get(next_url, timeout=30)
        names += response.json()["repositories"]
        link = response.headers.get("Link", "")
        next_url = url + link[1 : link.index(">")] if link else None

    def repository(name: str) -> None:
        session = requests.Session()
        for tag in session.get(f"{url}/v2/{name}/tags/list", timeout=30).json()["tags"]:
            digest = session.head(
                f"{url}/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=30
            ).headers["Docker-Content-Digest"]
            manifest = session.get(
                f"{url}/v2/{name}/manifests/{digest}", headers={"Accept": ACCEPT}, timeout=30
            ).json()
            session.get(f"{url}/v2/{name}/blobs/{manifest['config']['digest']}", timeout=30).json()

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(repository, names))


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def peak_mib(work: Callable[[], object]) -> float:
    # Measured in a run of its own: tracemalloc slows Python down and would skew the timings.
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def measure(repositories: int) -> dict[str, float]:
    with local_registry() as url:
        seed(url, repositories, TAGS)
        registries = [
            services.save_registry(
                Registry(
                    name=f"bench-{os.getpid()}-{repositories}-{n}",
                    kind="distribution",
                    endpoint=url,
                    sync_concurrency=CONCURRENCY,
                ),
                actor=None,
                public={"page_size": 100},
            )
            for n in range(2)
        ]
        try:
            timing, memory = registries
            raw = seconds(lambda: raw_baseline(url))
            full = seconds(lambda: _succeeded(sync.sync_inventory(timing)))
            again = seconds(lambda: _succeeded(sync.sync_inventory(timing)))
            peak = peak_mib(lambda: _succeeded(sync.sync_inventory(memory)))
        finally:
            for registry in registries:
                registry.delete()
    return {"raw": raw, "full": full, "again": again, "peak_mib": peak}


def _succeeded(run: object) -> None:
    if getattr(run, "status", "") != "succeeded":
        raise SystemExit(f"the sync failed: {getattr(run, 'error', '')}")


def run() -> None:
    small = max(1, REPOSITORIES // 5)
    figures = {size: measure(size) for size in (small, REPOSITORIES)}
    full = figures[REPOSITORIES]
    print(f"inventory sync, {REPOSITORIES} repositories x {TAGS} tags, concurrency {CONCURRENCY}")
    b_a, c_b = full["full"] / full["raw"], full["again"] / full["full"]
    print(f"  (a) raw HTTP baseline:  {full['raw']:8.2f} s")
    print(f"  (b) full Customs sync:  {full['full']:8.2f} s   (b)/(a) = {b_a:.2f}   target <= 1.5")
    print(f"  (c) re-sync, no change: {full['again']:8.2f} s   (c)/(b) = {c_b:.2f}   target <= 0.25")
    growth = full["peak_mib"] / figures[small]["peak_mib"]
    print(
        f"  peak Python memory of a full sync: {figures[small]['peak_mib']:.1f} MiB at {small} repositories, "
        f"{full['peak_mib']:.1f} MiB at {REPOSITORIES} ({growth:.2f}x for {REPOSITORIES // small}x the size)"
    )
