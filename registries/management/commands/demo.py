from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from registries import services, sync
from registries.demo import estate, people
from registries.models import Registry, Replica

PRIMARY_REGION, REPLICA_REGION = "eu-west", "us-east"


class Command(BaseCommand):
    help = (
        "Start two local registries (a primary and a regional replica) with sample images, register "
        "them in Customs, sync them, then serve the portal with its worker. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="set up and sync, then exit")

    def handle(self, *args: Any, addr: str, no_serve: bool, **options: Any) -> None:
        folder = settings.DATA_DIR / "demo"
        registry = self._registry()
        secret = services.rotate_webhook_secret(registry, actor=None)
        hook = f"http://{addr}{reverse('webhooks:registry', kwargs={'registry_id': registry.pk})}"
        running = []
        try:
            running.append(
                estate.start(
                    "primary",
                    estate.PRIMARY_PORT,
                    folder / PRIMARY_REGION,
                    notify_url=hook,
                    notify_secret=secret,
                )
            )
            running.append(estate.start("replica", estate.REPLICA_PORT, folder / REPLICA_REGION))
            estate.seed(running[0].url, running[1].url)
            self._sync(registry)
            added = people.seed(registry)
            self.stdout.write(f"Demo people, groups and access rules in place ({added} rules added).")
            if not no_serve:
                call_command("serve_local", addr=addr)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for local in running:
                local.stop()

    def _registry(self) -> Registry:
        registry = Registry.objects.filter(name="demo").first() or Registry(
            name="demo",
            kind="distribution",
            endpoint=f"http://127.0.0.1:{estate.PRIMARY_PORT}",
            region=PRIMARY_REGION,
            sync_interval_minutes=15,
        )
        services.save_registry(registry, actor=None, public={})
        Replica.objects.update_or_create(
            registry=registry,
            region=REPLICA_REGION,
            defaults={"endpoint": f"http://127.0.0.1:{estate.REPLICA_PORT}"},
        )
        return registry

    def _sync(self, registry: Registry) -> None:
        run = sync.sync_inventory(registry, trigger="command")
        if run.status != "succeeded":
            raise CommandError(f"the demo sync failed: {run.error}")
        for replica in registry.replicas.all():
            sync.sync_replica(replica, trigger="command")
        self.stdout.write(
            f"Demo registry synced: {run.repositories_seen} repositories, {run.tags_seen} tags; "
            f"the {REPLICA_REGION} replica lags behind on purpose. Sign in and open Registries."
        )
