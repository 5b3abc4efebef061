"""The reviewer's record of one offboarding: what was found, what was done, by whom and when, what
failed and why, and what re-reading the registries showed afterwards.

The report page, its CSV download and the API's export all read it from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import StreamingHttpResponse

from portal import exports
from registries.models import Offboarding, OffboardingStep

CSV_COLUMNS = (
    "offboarding",
    "person",
    "position",
    "place",
    "action",
    "subject",
    "why",
    "automated",
    "state",
    "attempts",
    "result",
    "done_at",
    "verification",
    "verification_note",
)


@dataclass(frozen=True)
class Summary:
    steps: int
    by_state: dict[str, int]  # state value -> count, every state present
    by_verification: dict[str, int]  # verification value -> count, every value present
    places: tuple[str, ...]

    @property
    def still_present(self) -> int:
        return self.by_verification[OffboardingStep.Verification.STILL_PRESENT]

    @property
    def failed(self) -> int:
        return self.by_state[OffboardingStep.State.FAILED]


def summary(offboarding: Offboarding) -> Summary:
    steps = list(offboarding.steps.values_list("state", "verification", "place"))
    states = Counter(state for state, _, _ in steps)
    checks = Counter(check for _, check, _ in steps)
    return Summary(
        steps=len(steps),
        by_state={value: states[value] for value in OffboardingStep.State.values},
        by_verification={value: checks[value] for value in OffboardingStep.Verification.values},
        places=tuple(dict.fromkeys(place for _, _, place in steps)),
    )


def rows(offboarding: Offboarding) -> Iterator[list[Any]]:
    """One row per step, in plan order, cells as CSV_COLUMNS names them."""
    person = str(offboarding.person)
    for step in offboarding.steps.order_by("position"):
        yield [
            offboarding.pk,
            person,
            step.position,
            step.place,
            step.action,
            step.subject,
            step.why,
            "true" if step.automated else "false",
            step.state,
            step.attempts,
            step.result,
            _iso(step.done_at),
            step.verification,
            step.verification_note,
        ]


def csv_response(offboarding: Offboarding) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        exports.csv_lines(CSV_COLUMNS, rows(offboarding)), content_type="text/csv; charset=utf-8"
    )
    # Usernames hold only letters, digits and @.+-_ (Django's validator): safe in the header as they are.
    filename = f"customs-offboarding-{offboarding.pk}-{offboarding.person.username}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Names of a person's credentials: no shared cache keeps a copy.
    response["Cache-Control"] = "no-store"
    return response


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
