"""Run every benchmark: `make bench` (or `python -m bench`)."""

from __future__ import annotations

import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings

    # DEBUG keeps every SQL statement in memory; a benchmark of memory must not measure that.
    settings.DEBUG = False
    import sys

    from bench import access, browser, sync, tokens

    # `python -m bench sync` runs one benchmark; no argument runs them all.
    benchmarks = {"tokens": tokens.run, "sync": sync.run, "browser": browser.run, "access": access.run}
    for name in sys.argv[1:] or list(benchmarks):
        benchmarks[name]()


if __name__ == "__main__":
    main()
