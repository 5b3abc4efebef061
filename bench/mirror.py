"""Mirror copy to two regions: Customs' copy_image next to `skopeo copy` to each region in turn (issue 10).

For an image of BENCH_MIRROR_MB (default 500; bulky_image's 20 MiB layers, which do not compress)
in a throwaway upstream docker-registry, each round of one run starts four fresh region registries
and times
  (a) skopeo copy upstream -> region 1, then upstream -> region 2;
  (b) Customs copy_image upstream -> regions 3 and 4 at once;
then prints the median (b)/(a) over BENCH_MIRROR_ROUNDS rounds (target <= 0.7: Customs reads the
upstream once, skopeo twice), the CPU seconds each side cost across every process involved (the
registries, skopeo, this process: a figure other load on the machine does not move much), and
memory during (b) for a 100 MB image and the full one: the process's resident high-water mark
and tracemalloc's peak of Python allocations (target: flat, whatever the image size).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from registries.demo import images as im
from registries.mirror import DestinationResult, Endpoint, copy_image

SIZE_MB = int(os.environ.get("BENCH_MIRROR_MB", "500"))
ROUNDS = int(os.environ.get("BENCH_MIRROR_ROUNDS", "3"))
SMALL_MB = 100
LAYER_MB = 20
REPOSITORY, MIRROR, TAG = "bench/app", "mirror/app", "1"


@dataclass
class Registry:
    url: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def cpu_seconds(self) -> float:
        """User + system CPU the registry process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def registry(workdir: Path) -> Iterator[Registry]:
    """A docker-registry on loopback storing under `workdir`, configured as the tests do; stopped on exit."""
    binary = shutil.which("docker-registry")
    if not binary:
        raise SystemExit("bench/mirror.py needs Debian's docker-registry: apt-get install docker-registry")
    workdir.mkdir(parents=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "version": 0.1,
        "log": {"level": "error"},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "bench"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
    }
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    process = subprocess.Popen(  # noqa: S603
        [binary, "serve", str(workdir / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    running = Registry(f"http://127.0.0.1:{port}", process)
    try:
        for _ in range(200):
            try:
                if requests.get(f"{running.url}/v2/", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"the registry at {running.url} did not start")
        yield running
    finally:
        process.terminate()
        process.wait(timeout=10)


def seed(url: str, megabytes: int) -> None:
    """Push the bench image from a child process: building it holds the whole image in memory,
    and the memory measured later must be the copy's alone."""
    child = multiprocessing.get_context("fork").Process(target=_push, args=(url, megabytes))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"seeding the {megabytes} MB image failed")


def _push(url: str, megabytes: int) -> None:
    image = im.bulky_image("mirror-bench", layers=max(1, megabytes // LAYER_MB), layer_size=LAYER_MB * 2**20)
    im.Pusher(url, timeout=300).push_image(REPOSITORY, image, tags=[TAG])


def warm(storage: Path) -> None:
    # Both contenders should find the upstream's blobs in the page cache, not only the second one.
    for path in storage.rglob("*"):
        if path.is_file():
            with path.open("rb") as data:
                while data.read(8 * 2**20):
                    pass


def skopeo(upstream: str, region: str) -> None:
    binary = shutil.which("skopeo")
    if not binary:
        raise SystemExit("bench/mirror.py needs skopeo: apt-get install skopeo")
    with tempfile.TemporaryDirectory() as home:
        auth = Path(home) / "auth.json"
        auth.write_text('{"auths": {}}')  # never the machine's stored logins
        subprocess.run(  # noqa: S603
            [
                binary,
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--preserve-digests",
                "--all",
                f"docker://{upstream.removeprefix('http://')}/{REPOSITORY}:{TAG}",
                f"docker://{region.removeprefix('http://')}/{MIRROR}:{TAG}",
            ],
            check=True,
            env={**os.environ, "REGISTRY_AUTH_FILE": str(auth)},
            timeout=1800,
        )


def one_after_the_other(upstream: str, regions: list[str]) -> None:
    for region in regions:
        skopeo(upstream, region)


def customs(upstream: str, regions: list[str]) -> list[DestinationResult]:
    results = copy_image(
        Endpoint(upstream, REPOSITORY), TAG, [Endpoint(region, MIRROR) for region in regions]
    )
    if failed := [result.error for result in results if result.error]:
        raise SystemExit(f"copy_image failed: {failed}")
    return results


def digest(url: str, repository: str) -> str:
    response = requests.head(
        f"{url}/v2/{repository}/manifests/{TAG}", headers={"Accept": im.MANIFEST_ACCEPT}, timeout=30
    )
    return response.headers.get("Docker-Content-Digest", "")


def image_bytes(upstream: str) -> int:
    manifest = requests.get(
        f"{upstream}/v2/{REPOSITORY}/manifests/{TAG}", headers={"Accept": im.MANIFEST_ACCEPT}, timeout=30
    ).json()
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


# --- measuring ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    seconds: float
    cpu: float  # every process involved: registries, skopeo, this one


def cost(work: Callable[[], object], registries: list[Registry]) -> Cost:
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # skopeo, once reaped
        spent = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        return spent + sum(each.cpu_seconds() for each in registries)

    cpu_before, started = cpu(), time.perf_counter()
    work()
    return Cost(time.perf_counter() - started, cpu() - cpu_before)


def _status(name: str) -> int:
    found = re.search(rf"^{name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def rss_high_water(work: Callable[[], object]) -> tuple[int, int]:
    """(resident bytes before, high-water mark during `work`); Linux resets the mark on request."""
    # Without the reset (not Linux, or not allowed) the mark covers the process's life: an upper bound.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status("VmRSS")
    work()
    return before, _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def python_peak(work: Callable[[], object]) -> int:
    # A run of its own: tracemalloc slows Python down and would skew the timings.
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@dataclass
class Figures:
    image_bytes: int
    skopeo: list[Cost] = field(default_factory=list)
    customs: list[Cost] = field(default_factory=list)
    bytes_sent: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    python_peak: int = 0


def measure(workdir: Path, megabytes: int, rounds: int) -> Figures:
    with registry(workdir / "upstream") as upstream:
        seed(upstream.url, megabytes)
        warm(workdir / "upstream" / "data")
        figures = Figures(image_bytes(upstream.url))
        for number in range(rounds):
            with tempfile.TemporaryDirectory(dir=workdir) as scratch:
                one_round(upstream, Path(scratch), figures, watch_memory=number == 0)
        with ExitStack() as stack:
            traced_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=workdir)))
            traced = [stack.enter_context(registry(traced_dir / f"traced-{n}")).url for n in range(2)]
            figures.python_peak = python_peak(lambda: customs(upstream.url, traced))
        return figures


def one_round(upstream: Registry, scratch: Path, figures: Figures, *, watch_memory: bool) -> None:
    """Four fresh regions: two for skopeo, two for Customs; then check every region holds the image."""
    with ExitStack() as stack:
        regions = [stack.enter_context(registry(scratch / f"region-{n}")) for n in range(4)]
        everyone = [upstream, *regions]
        urls = [region.url for region in regions]
        figures.skopeo.append(cost(lambda: one_after_the_other(upstream.url, urls[:2]), everyone))
        results: list[DestinationResult] = []

        def copy() -> None:
            figures.customs.append(cost(lambda: results.extend(customs(upstream.url, urls[2:])), everyone))

        if watch_memory:
            figures.rss_before, figures.rss_peak = rss_high_water(copy)
        else:
            copy()
        figures.bytes_sent = sum(result.bytes_sent for result in results)
        want = digest(upstream.url, REPOSITORY)
        if {digest(url, MIRROR) for url in urls} != {want}:
            raise SystemExit("a region does not hold the upstream image")


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="customs-bench-mirror-") as scratch:
        small = measure(Path(scratch) / "small", min(SMALL_MB, SIZE_MB), 1)
        full = measure(Path(scratch) / "full", SIZE_MB, ROUNDS)
    skopeo_wall = statistics.median(each.seconds for each in full.skopeo)
    customs_wall = statistics.median(each.seconds for each in full.customs)
    ratios = [c.seconds / s.seconds for c, s in zip(full.customs, full.skopeo, strict=True)]
    skopeo_cpu = statistics.median(each.cpu for each in full.skopeo)
    customs_cpu = statistics.median(each.cpu for each in full.customs)
    print(
        f"mirror copy of a {mib(full.image_bytes)} image ({SIZE_MB // LAYER_MB} layers) to two regions, "
        f"docker-registry 2.8 on loopback, median of {len(ratios)} rounds"
    )
    print(
        f"  (a) skopeo copy to region 1, then region 2: {skopeo_wall:6.2f} s   CPU {skopeo_cpu:5.2f} s   "
        f"rounds {', '.join(f'{each.seconds:.2f}' for each in full.skopeo)}"
    )
    print(
        f"  (b) Customs copy_image to both regions:     {customs_wall:6.2f} s   CPU {customs_cpu:5.2f} s   "
        f"rounds {', '.join(f'{each.seconds:.2f}' for each in full.customs)}"
    )
    print(
        f"  (b)/(a) = {statistics.median(ratios):.2f} (per round {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"target <= 0.7); CPU (b)/(a) = {customs_cpu / skopeo_cpu:.2f}"
    )
    print(f"  blob bytes (b) sent: {mib(full.bytes_sent)}, two regions' worth; each upstream blob read once")
    small_ratio = small.customs[0].seconds / small.skopeo[0].seconds
    print(f"  with a {mib(small.image_bytes)} image: (b)/(a) = {small_ratio:.2f} (one round)")
    for each in (small, full):
        print(
            f"  memory during (b), {mib(each.image_bytes)} image: RSS high-water {mib(each.rss_peak)}, "
            f"+{mib(each.rss_peak - each.rss_before)} over the {mib(each.rss_before)} before; "
            f"tracemalloc peak {mib(each.python_peak)}"
        )
