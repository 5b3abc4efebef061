"""Who reviews what: the campaign's reviewer rule (group owners, managers, named reviewers), then
the fallbacks when it finds nobody."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from accounts.models import User
from accounts.scim.resources import ENTERPRISE_SCHEMA, scim_id
from registries.models import Credential
from registries.reviews.base import Campaign
from registries.reviews.subjects import Subject


def managers_of(people: Iterable[User]) -> dict[int, User]:
    """Each person's manager, where the directory sent one (SCIM's enterprise extension) and Customs
    knows them: by the SCIM id Customs gave them, else by the directory's own id. User has no
    manager column; this is the one place the attribute is read."""
    wanted: dict[int, tuple[str, str]] = {}
    for person in people:
        if reference := _manager_reference(person):
            wanted[person.pk] = (person.directory, reference)
    ids = {scim for _, reference in wanted.values() if (scim := scim_id(reference))}
    references = {reference for _, reference in wanted.values()}
    candidates = User.objects.filter(Q(scim_id__in=ids) | Q(external_id__in=references))
    by_reference: dict[tuple[str, str], User] = {}
    for candidate in candidates:
        by_reference.setdefault((candidate.directory, candidate.external_id), candidate)
        by_reference[(candidate.directory, str(candidate.scim_id))] = candidate  # ours wins
    return {pk: by_reference[key] for pk, key in wanted.items() if key in by_reference}


def _manager_reference(person: User) -> str:
    extension = person.directory_attributes.get(ENTERPRISE_SCHEMA)
    manager = extension.get("manager") if isinstance(extension, dict) else None
    value = manager.get("value") if isinstance(manager, dict) else manager  # Entra may send a bare id
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class Reviewers:
    people: tuple[User, ...]
    why: str


def reviewers_for(
    campaign: Campaign, subject: Subject, *, named: list[User], managers: dict[int, User]
) -> Reviewers:
    """Who reviews a subject under the campaign's rule; when the rule finds nobody, the named
    reviewers, else the campaign's owner. Nobody reviews their own access."""
    found, why = _by_rule(campaign.reviewer_rule, subject, named, managers)
    chosen = _eligible(found, subject)
    if not chosen and campaign.reviewer_rule != Campaign.ReviewerRule.NAMED:
        chosen, why = _eligible(named, subject), f"named reviewers ({why or 'nobody found'})"
    if not chosen and campaign.owner is not None:
        chosen, why = _eligible([campaign.owner], subject), "the campaign's owner (no other reviewer)"
    return Reviewers(tuple(chosen), why if chosen else "nobody: an admin or the owner decides")


def _by_rule(
    rule: str, subject: Subject, named: list[User], managers: dict[int, User]
) -> tuple[list[User], str]:
    Rule = Campaign.ReviewerRule
    if rule == Rule.NAMED:
        return named, "named reviewers"
    if subject.credential is not None:
        answering = answers_for(subject.credential)
        if rule == Rule.MANAGER and answering is not None and answering.pk in managers:
            return [managers[answering.pk]], f"manager of {answering.username}, from the directory"
        # A registry credential has no group: who answers for it (its steward or owner) certifies it.
        return ([answering], "who answers for the credential") if answering else ([], "nobody answers for it")
    if rule == Rule.MANAGER and subject.person is not None:
        manager = managers.get(subject.person.pk)
        return ([manager], "manager, from the directory") if manager else ([], "no manager in the directory")
    owners = [group.owner for group in subject.groups.values() if group.owner is not None]
    names = ", ".join(sorted(str(group) for group in subject.groups.values() if group.owner is not None))
    return owners, f"owner of {names}" if owners else "no group owner set"


def answers_for(credential: Credential) -> User | None:
    """Who answers for a credential: whoever took it over, else its owner, else its creator."""
    return credential.steward or credential.owner_user or credential.created_by_user


def _eligible(people: Iterable[User], subject: Subject) -> list[User]:
    own = subject.person.pk if subject.person is not None else None
    unique = {person.pk: person for person in people if person.may_sign_in and person.pk != own}
    return sorted(unique.values(), key=lambda person: person.username)
