"""Run every benchmark: `make bench` (or `python -m bench`, or `python -m bench tokens --scale 0.05`)."""

from __future__ import annotations

import argparse
import os

import django

NAMES = ("tokens", "sync", "browser", "access", "hygiene", "lineage", "mirror")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run benchmarks; none named runs all."
    )
    parser.add_argument("names", nargs="*", metavar="name", help=f"one or more of {', '.join(NAMES)}")
    parser.add_argument(
        "--scale",
        type=float,
        help="shrink the issue-5 data set the tokens benchmark seeds (BENCH_SCALE; default 1, full size)",
    )
    arguments = parser.parse_args()
    if unknown := [name for name in arguments.names if name not in NAMES]:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    if arguments.scale is not None:
        os.environ["BENCH_SCALE"] = str(arguments.scale)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings

    # DEBUG keeps every SQL statement in memory; a benchmark of memory must not measure that.
    settings.DEBUG = False

    from bench import access, browser, hygiene, lineage, mirror, sync, tokens

    # `python -m bench sync` runs one benchmark; no argument runs them all.
    benchmarks = {
        "tokens": tokens.run,
        "sync": sync.run,
        "browser": browser.run,
        "access": access.run,
        "hygiene": hygiene.run,
        "lineage": lineage.run,
        "mirror": mirror.run,
    }
    for name in arguments.names or list(benchmarks):
        benchmarks[name]()


if __name__ == "__main__":
    main()
