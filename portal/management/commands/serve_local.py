from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the portal with a Celery worker and beat beside it (the local run). Ctrl-C stops all."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args: Any, addr: str, **options: Any) -> None:
        python = sys.executable
        children = [
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "portal",
                    "worker",
                    "--beat",
                    "--pool",
                    "threads",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    settings.CELERY_BEAT_SCHEDULE_FILENAME,
                ]
            ),
            subprocess.Popen([python, "manage.py", "runserver", addr]),
        ]
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"Customs on http://{addr}/ with a worker and beat; Ctrl-C stops everything.")
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.3)
        failed = [child for child in children if child.poll() not in (None, 0)] and not stopping
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if failed:
            sys.exit("a process of the local run stopped unexpectedly; see its output above")
