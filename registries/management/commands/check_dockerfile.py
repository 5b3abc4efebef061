from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries.policy.catalog import Catalog
from registries.policy.dockerfile import NON_COMPLIANT, CheckResult, DockerfileError, check

# CI reads the exit status: 0 compliant, 1 not, 2 the input is unreadable or not a Dockerfile.
NOT_COMPLIANT = 1
NOT_A_DOCKERFILE = 2


class Command(BaseCommand):
    help = (
        "Judge every base image a Dockerfile's FROM lines name against the base-image catalog, reading "
        "FROM as BuildKit does. Exits 0 when compliant, 1 when not, 2 when the file cannot be read or "
        "is not a Dockerfile."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="the Dockerfile; - reads stdin")
        parser.add_argument(
            "--build-arg",
            action="append",
            default=[],
            dest="build_args",
            metavar="NAME=VALUE",
            help="as docker build --build-arg: replaces an ARG's default; NAME alone takes the value "
            "from the environment, as docker does (repeatable)",
        )
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, path: str, build_args: list[str], format: str, **options: Any) -> None:
        text = _read(path)
        try:
            result = check(text, _build_args(build_args), Catalog.load())
        except DockerfileError as exc:
            raise CommandError(f"{path}: {exc}", returncode=NOT_A_DOCKERFILE) from None
        self.stdout.write(json.dumps(result.as_dict(), indent=2) if format == "json" else _text(result))
        if not result.compliant:
            refused = sum(stage.verdict in NON_COMPLIANT for stage in result.stages)
            raise CommandError(f"{path}: not compliant ({refused} FROM refused)", returncode=NOT_COMPLIANT)


def _read(path: str) -> str:
    try:
        # Strict UTF-8, BOM kept: the Dockerfile reader strips a BOM itself, as BuildKit does.
        return sys.stdin.read() if path == "-" else Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", returncode=NOT_A_DOCKERFILE) from None


def _build_args(given: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in given:
        name, has_value, value = item.partition("=")
        if not name:
            raise CommandError(f"--build-arg {item!r}: expected NAME=VALUE", returncode=NOT_A_DOCKERFILE)
        if has_value:
            values[name] = value
        elif name in os.environ:
            values[name] = os.environ[name]  # docker build's rule; unset in the environment: no build arg
    return values


def _text(result: CheckResult) -> str:
    lines = [
        f"{'compliant' if result.compliant else 'NOT compliant'}; final base: {result.final_base or 'none'}"
    ]
    for stage in result.stages:
        named = f" (stage {stage.stage})" if stage.stage else ""
        lines.append(
            f"line {stage.line}{named}: {stage.image or '(empty)'}: {stage.verdict}: {stage.message}"
        )
    return "\n".join(lines)
