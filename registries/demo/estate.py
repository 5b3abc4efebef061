"""A small demo estate: two local registries (a primary and a regional replica) with sample images.

Used by `manage.py demo` (and so `make demo`): a newcomer sees a real inventory at once, with base
images, images built on them (some annotated, some recognisable only by their layers) and images
that have not reached the second region yet.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from registries.demo import images as im

PRIMARY_PORT, REPLICA_PORT = 5100, 5101


@dataclass
class LocalRegistry:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start(
    name: str, port: int, folder: Path, *, notify_url: str = "", notify_secret: str = ""
) -> LocalRegistry:
    """Run Debian's docker-registry on loopback with its data in `folder` (kept between runs)."""
    binary = shutil.which("docker-registry")
    if not binary:
        raise RuntimeError("the demo needs Debian's docker-registry package: apt-get install docker-registry")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(_config(folder, port, notify_url, notify_secret))
    log = (folder / "registry.log").open("ab")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)  # noqa: S603
    registry = LocalRegistry(name=name, port=port, process=process)
    _wait(registry)
    return registry


def _config(folder: Path, port: int, notify_url: str, notify_secret: str) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {folder / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: customs-demo",
    ]
    if notify_url:
        # The registry tells Customs about pushes and deletes as they happen.
        lines += [
            "notifications:",
            "  endpoints:",
            "    - name: customs",
            f"      url: {notify_url}",
            "      headers:",
            f"        Authorization: [Bearer {notify_secret}]",
            "      timeout: 2s",
            "      threshold: 5",
            "      backoff: 2s",
            "      ignore:",
            "        mediatypes: [application/octet-stream]",
            "        actions: [pull]",
        ]
    return "\n".join(lines) + "\n"


def _wait(registry: LocalRegistry) -> None:
    for _ in range(100):
        if registry.process.poll() is not None:
            raise RuntimeError(f"the {registry.name} registry stopped at start; see its registry.log")
        try:
            if requests.get(f"{registry.url}/v2/", timeout=1).status_code in (200, 401):
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"the {registry.name} registry did not answer on {registry.url}")


def seed(primary: str, replica: str) -> list[str]:
    """Push the sample estate (idempotent: the same content gives the same digests). Returns references."""
    debian = im.base_image("debian", version="12", created="2026-06-01T00:00:00Z")
    python = im.child_image(
        debian,
        {"usr/local/bin/python3": b"#!python 3.12\n"},
        base_name="docker.io/library/debian:12",
        created="2026-07-01T00:00:00Z",
    )
    alpine = im.multi_platform_image("alpine", version="3.20", created="2026-05-15T00:00:00Z")
    centos = im.base_image("centos", version="7", format="docker", created="2019-01-01T00:00:00Z")
    api = im.child_image(
        python,
        {"app/api.py": b"print('payments')\n"},
        base_name="docker.io/library/python:3.12",
        labels={"team": "payments"},
        created="2026-11-01T00:00:00Z",
    )
    frontend = im.child_image(
        debian, {"srv/index.html": b"<h1>shop</h1>\n"}, labels={"team": "web"}, created="2026-11-20T00:00:00Z"
    )
    legacy = im.child_image(
        centos, {"opt/report.sh": b"#!/bin/sh\n"}, labels={"team": "finance"}, created="2024-03-01T00:00:00Z"
    )
    estate: list[tuple[str, im.Image | im.Index, list[str], bool]] = [
        ("library/debian", debian, ["12", "12-slim"], True),
        ("library/python", python, ["3.12"], True),
        ("library/alpine", alpine, ["3.20", "latest"], True),
        ("library/centos", centos, ["7"], False),
        ("payments/api", api, ["1.0", "latest"], True),
        ("web/frontend", frontend, ["2.3"], False),  # not copied to the second region yet
        ("finance/legacy-reports", legacy, ["0.9"], False),
    ]
    pushed = []
    for url, everything in ((primary, True), (replica, False)):
        pusher = im.Pusher(url)
        for repository, content, tags, replicated in estate:
            if everything or replicated:
                _push(pusher, repository, content, tags)
                pushed.append(f"{url}/{repository}")
    return pushed


def _push(pusher: im.Pusher, repository: str, content: im.Image | im.Index, tags: list[str]) -> None:
    if isinstance(content, im.Index):
        pusher.push_index(repository, content, tags=tags)
    else:
        pusher.push_image(repository, content, tags=tags)
