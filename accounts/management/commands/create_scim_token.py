from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.scim import services
from portal.errors import RequestRejected


class Command(BaseCommand):
    help = "Create a SCIM provisioning token for one directory and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the connection it is for, e.g. 'entra-prod'")
        parser.add_argument("--directory", default="default", help="the directory its users belong to")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            issued = services.create_token(
                name=options["name"], directory_name=options["directory"], actor=None
            )
        except RequestRejected as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"SCIM token “{issued.token.name}” for directory “{issued.token.directory}”. "
            "It is shown once; paste it into the identity provider now:"
        )
        # The secret alone on stdout, so `create_scim_token x | vault-write` captures nothing else.
        self.stdout.write(issued.secret)
