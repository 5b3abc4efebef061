from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from portal.errors import RequestRejected


class Command(BaseCommand):
    help = "Create the break-glass local admin on first start and print its password once."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, password = services.ensure_break_glass_admin()
        except RequestRejected as exc:
            raise CommandError(str(exc)) from None
        if password is None:
            self.stdout.write(f"Break-glass admin: {user.get_username()} (password shown only when created)")
            return
        self.stdout.write(
            self.style.WARNING(
                "Break-glass admin created. This password is shown once; store it in your vault:\n"
                f"  username: {user.get_username()}\n  password: {password}"
            )
        )
