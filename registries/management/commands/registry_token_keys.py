from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries.models import TokenSigningKey
from registries.tokenserver import keys


class Command(BaseCommand):
    help = "Manage the keys registry tokens are signed with, and print the bundle registries must trust."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name, text in (("generate", "create the first signing key"), ("rotate", "make a new active key")):
            sub = actions.add_parser(name, help=text)
            sub.add_argument(
                "--algorithm",
                choices=TokenSigningKey.Algorithm.values,
                default=TokenSigningKey.Algorithm.ES256,
            )
        retire = actions.add_parser("retire", help="drop a rotated-out key from the bundle")
        retire.add_argument("kid")
        actions.add_parser("list", help="every key, newest first")
        actions.add_parser("bundle", help="print the PEM bundle for auth.token.rootcertbundle")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "generate":
                self._show(keys.generate(algorithm=options["algorithm"], actor=None), "created")
            elif action == "rotate":
                self._show(keys.rotate(algorithm=options["algorithm"], actor=None), "now signing")
                # Registries verify offline: until they get the new bundle they refuse the new key's tokens.
                self.stderr.write(
                    "Install the new bundle (`bundle`) on every registry, then retire the old key."
                )
            elif action == "retire":
                self._show(keys.retire(options["kid"], actor=None), "retired")
            elif action == "list":
                self._list()
            else:
                self.stdout.write(keys.bundle(), ending="")
        except keys.SigningKeyError as error:
            raise CommandError(str(error)) from None

    def _show(self, signing_key: TokenSigningKey, what: str) -> None:
        self.stdout.write(f"{what}: {signing_key.algorithm} {signing_key.kid}")

    def _list(self) -> None:
        for signing_key in TokenSigningKey.objects.all():
            state = "active" if signing_key.active else "retired" if signing_key.retired_at else "published"
            created = f"{signing_key.created_at:%Y-%m-%d %H:%M}"
            self.stdout.write(f"{signing_key.kid}  {signing_key.algorithm}  {state:9}  {created}")
