"""Run every benchmark: `make bench` (or `python -m bench`)."""

from __future__ import annotations

import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from bench import tokens

    tokens.run()


if __name__ == "__main__":
    main()
