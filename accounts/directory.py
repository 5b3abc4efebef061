"""What the directory says about people: group memberships from sign-ins, and leaving.

Sign-ins (OIDC, SAML) and SCIM both feed these functions, so every door makes the same changes
and leaves the same audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from django.db import transaction
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, Source, User
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


def deactivate_user(user: User, *, actor: User | None, reason: str, departed: bool = False) -> bool:
    """Disable someone (or mark them departed) and cut them off from Customs at once. Safe to repeat.

    Their API and registry tokens are revoked (re-enabling them later does not bring tokens back),
    their web sessions end, and the offboarding hook is asked to clean up the registries.
    """
    status = User.Status.DEPARTED if departed else User.Status.DISABLED
    if user.status == status or (user.status == User.Status.DEPARTED and not departed):
        return False  # SCIM retries and a DELETE after a PATCH active=false report the same thing
    with transaction.atomic():
        user.status, user.is_active = status, False
        if departed:
            user.departed_at = timezone.now()
        user.save(update_fields=["status", "is_active", "departed_at"])
        revoked = PersonalToken.objects.filter(owner=user).revoke()
        ended = end_sessions(user)
        action = AuditAction.USER_DEPARTED if departed else AuditAction.USER_DISABLED
        audit.record(actor, action, target=user, reason=reason, tokens_revoked=revoked, sessions_ended=ended)
        transaction.on_commit(lambda: request_offboarding(user, reason=reason))
    return True


def reactivate_user(user: User, *, actor: User | None, reason: str) -> bool:
    """Let someone back in. Revoked tokens stay revoked: they make new ones."""
    if user.status == User.Status.ACTIVE and user.is_active:
        return False
    with transaction.atomic():
        user.status, user.is_active, user.departed_at = User.Status.ACTIVE, True, None
        user.save(update_fields=["status", "is_active", "departed_at"])
        audit.record(actor, AuditAction.USER_REACTIVATED, target=user, reason=reason)
    return True


def end_sessions(user: User) -> int:
    """End every web session of this person, wherever it was opened. Returns how many."""
    from allauth.usersessions.models import UserSession

    sessions = list(UserSession.objects.filter(user=user))
    for session in sessions:
        session.end()
    return len(sessions)


def request_offboarding(user: User, *, reason: str) -> None:
    """The offboarding hook: registry-side clean-up of a person who left or was disabled.

    Customs itself is already closed to them when this runs. The offboarding issue plugs the
    cross-registry plan (memberships, registry-native credentials, robots they created) in here;
    until then the request is recorded so a reviewer can see who still needs offboarding.
    """
    audit.record(None, AuditAction.OFFBOARDING_REQUESTED, target=user, reason=reason, status=user.status)
