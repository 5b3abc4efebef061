"""Judging references against the catalog: status, tag patterns, pinned digests and mirrors."""

from __future__ import annotations

from typing import Any

import pytest

from registries import tasks
from registries.mirror import tasks as mirror_tasks
from registries.models import BaseImage, BaseImageMirror
from registries.policy import catalog_io
from registries.policy.catalog import Catalog, Verdict
from registries.policy.references import parse
from tests import factories

pytestmark = pytest.mark.django_db

PINNED = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def entry(name: str, **fields: object) -> BaseImage:
    return BaseImage.objects.create(name=name, **fields)


def judge(text: str) -> tuple[Verdict, str]:
    judgement = Catalog.load().judge(parse(text))
    return judgement.verdict, judgement.message


def test_status_decides_and_names_the_replacement() -> None:
    entry("docker.io/library/python", tags=["3.12-*", "3.13-*"])
    entry("docker.io/library/node", status="deprecated", replacement="docker.io/library/node:22-slim")
    entry("docker.io/library/centos", status="banned", replacement="docker.io/library/almalinux:9")

    assert judge("python:3.12-slim")[0] == Verdict.APPROVED
    verdict, message = judge("node:18")
    assert verdict == Verdict.DEPRECATED
    assert "use docker.io/library/node:22-slim instead" in message
    assert judge("centos:7") == (
        Verdict.BANNED,
        "docker.io/library/centos:7 is banned; use docker.io/library/almalinux:9 instead",
    )
    assert judge("ruby:3")[0] == Verdict.UNAPPROVED


def test_tag_patterns_are_whole_globs_and_case_sensitive() -> None:
    entry("docker.io/library/python", tags=["3.12-*"])
    assert judge("python:3.12-alpine")[0] == Verdict.APPROVED
    assert judge("python:3.11-alpine") == (
        Verdict.UNAPPROVED,
        "docker.io/library/python:3.11-alpine: tag 3.11-alpine is not allowed (allowed: 3.12-*)",
    )
    assert judge("python:x3.12-alpine")[0] == Verdict.UNAPPROVED  # anchored at both ends
    assert judge("python:3.12-ALPINE")[0] == Verdict.APPROVED  # * matches any case; the prefix must match
    assert judge("python:3.12")[0] == Verdict.UNAPPROVED


def test_digest_only_references_need_no_patterns_or_a_pinned_digest() -> None:
    entry("docker.io/library/alpine")
    entry("docker.io/library/python", tags=["3.12-*"], digests=[PINNED])
    assert judge(f"alpine@{OTHER}")[0] == Verdict.APPROVED  # no patterns: any digest
    assert judge(f"python@{PINNED}")[0] == Verdict.APPROVED
    assert judge(f"python@{OTHER}")[0] == Verdict.UNAPPROVED
    assert judge(f"python:3.12-slim@{OTHER}")[1].endswith("is not one of the pinned digests")


def test_a_regional_mirror_counts_as_its_entry() -> None:
    python = entry("docker.io/library/python", tags=["3.12-*"])
    mirror = factories.registry(endpoint="https://mirror.westeurope.example")
    BaseImageMirror.objects.create(base_image=python, registry=mirror, repository="base/python", region="eu")
    assert judge("mirror.westeurope.example/base/python:3.12-slim")[0] == Verdict.APPROVED
    assert judge("mirror.westeurope.example/base/python:3.11")[0] == Verdict.UNAPPROVED
    assert judge("mirror.westeurope.example/other/python:3.12-slim")[0] == Verdict.UNAPPROVED


def test_docker_hubs_registry_host_is_docker_hub_for_policy() -> None:
    entry("docker.io/library/centos", status="banned")
    assert judge("registry-1.docker.io/library/centos:7")[0] == Verdict.BANNED
    assert judge("registry-1.docker.io/centos:7")[0] == Verdict.BANNED


def test_no_prefix_of_a_name_is_its_entry() -> None:
    entry("docker.io/myco/base")
    assert judge("myco/base:1")[0] == Verdict.APPROVED
    assert judge("myco/base-evil:1")[0] == Verdict.UNAPPROVED
    assert judge("myco/base/sub:1")[0] == Verdict.UNAPPROVED


def test_a_catalog_change_queues_lineage_and_fills_new_mirrors(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    lineage: list[tuple[object, ...]] = []
    mirrored: list[int] = []
    monkeypatch.setattr(tasks.refresh_lineage, "delay", lambda *args: lineage.append(args))
    monkeypatch.setattr(mirror_tasks, "mirror_after_catalog_change", mirrored.append)
    factories.registry(name="cache-eu")
    text = (
        "base_images:\n"
        "  - name: docker.io/library/python\n"
        '    tags: ["3.12-*"]\n'
        "    mirrors: [{registry: cache-eu, repository: base/python, region: westeurope}]\n"
        "  - name: docker.io/library/alpine\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        catalog_io.import_catalog(text, actor=None)
    python = BaseImage.objects.get(name="docker.io/library/python")
    assert mirrored == [python.pk]  # alpine has no mirrors to fill
    assert len(lineage) == 2
    with django_capture_on_commit_callbacks(execute=True):
        catalog_io.import_catalog(text, actor=None)  # unchanged: nothing to redo
    assert len(lineage) == 2
    with django_capture_on_commit_callbacks(execute=True):
        catalog_io.delete_base_image(python, actor=None)
    assert len(lineage) == 3
