"""What sign-ins say about people's directory groups: replaced at every sign-in, by immutable id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from django.db import transaction
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, Source, User
from portal import audit
from portal.audit import AuditAction

SSO_SOURCES = (Source.OIDC, Source.SAML)


class ClaimState(Enum):
    """Why a sign-in carried no usable group list."""

    ABSENT = "absent"  # the provider sent no groups claim at all: we know nothing, change nothing
    OVERAGE = "overage"  # too many groups for the token: keep what SCIM and earlier sign-ins gave


@dataclass(frozen=True)
class GroupClaim:
    external_id: str
    display_name: str = ""


GroupsClaimed = Sequence[GroupClaim] | ClaimState


@dataclass(frozen=True)
class MembershipChange:
    added: list[str]
    removed: list[str]


def sync_sign_in_groups(user: User, claimed: GroupsClaimed, *, source: Source) -> MembershipChange:
    """Replace the memberships earlier sign-ins gave with the groups this sign-in carried.

    Matched by immutable id within the user's directory, never by display name. Memberships from
    SCIM are left alone: the provisioning client keeps those. An absent claim changes nothing; an
    overage is recorded so the profile page can say why the groups look stale.
    """
    now = timezone.now()
    with transaction.atomic():
        if isinstance(claimed, ClaimState):
            _note_claim(
                user, User.GroupsClaim.OVERAGE if claimed is ClaimState.OVERAGE else User.GroupsClaim.UNKNOWN
            )
            return MembershipChange(added=[], removed=[])
        wanted = {claim.external_id: _group_for(user.directory, claim, source) for claim in claimed}
        current = {m.group.external_id: m for m in user.memberships.select_related("group")}
        added = [gid for gid in wanted if gid not in current]
        removed = [gid for gid, m in current.items() if gid not in wanted and m.source in SSO_SOURCES]
        GroupMembership.objects.bulk_create(
            [GroupMembership(user=user, group=wanted[gid], source=source, synced_at=now) for gid in added]
        )
        GroupMembership.objects.filter(
            user=user, group__external_id__in=removed, source__in=SSO_SOURCES
        ).delete()
        GroupMembership.objects.filter(user=user, group__external_id__in=wanted, source=source).update(
            synced_at=now
        )
        _note_claim(user, User.GroupsClaim.COMPLETE)
        if added or removed:
            audit.record(
                user, AuditAction.GROUPS_SYNCED, target=user, source=source, added=added, removed=removed
            )
    user.__dict__.pop("role", None)  # the cached role may change with the groups
    return MembershipChange(added=added, removed=removed)


def _group_for(directory: str, claim: GroupClaim, source: Source) -> DirectoryGroup:
    group, created = DirectoryGroup.objects.get_or_create(
        directory=directory,
        external_id=claim.external_id,
        defaults={"display_name": claim.display_name or claim.external_id, "source": source},
    )
    if not created:
        DirectoryGroup.objects.filter(pk=group.pk).update(synced_at=timezone.now())
    return group


def _note_claim(user: User, state: str) -> None:
    user.groups_claim, user.groups_claimed_at = state, timezone.now()
    user.save(update_fields=["groups_claim", "groups_claimed_at"])
