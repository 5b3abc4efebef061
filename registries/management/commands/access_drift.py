from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries import drift
from registries.models import Registry

SAID = {
    drift.Status.BY_CONSTRUCTION: "no drift by construction (Customs is its token server)",
    drift.Status.NOT_READABLE: "not compared: its connector does not read grants",
    drift.Status.NOT_READ_YET: "not compared: no sync has read its grants yet",
}


class Command(BaseCommand):
    help = "Compare access rules with the grants registries hold, and update the drift findings."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--registry", metavar="NAME", help="one registry (default: every registry)")

    def handle(self, *args: Any, registry: str | None = None, **options: Any) -> None:
        registries = Registry.objects.all()
        if registry is not None:
            registries = registries.filter(name=registry)
            if not registries.exists():
                raise CommandError(f"no registry named {registry!r}; see the Registries page for names")
        for result in drift.reconcile_all(registries):
            self.stdout.write(f"{result.registry.name}: {self._summary(result)}")

    def _summary(self, result: drift.Drift) -> str:
        if not result.compared:
            return SAID[result.status]
        return (
            f"{result.grants} grants, {result.rules} rules in force; "
            f"{len(result.unruled)} grants give access without a rule, "
            f"{len(result.unreflected)} rules not reflected; "
            f"plan: +{len(result.plan.additions)} / -{len(result.plan.removals)}"
        )
