"""State changes made by SCIM clients, and the tokens they use. Every change is audited.

The actor is None (the system); the audit detail names the token, so the trail shows which
provisioning connection did it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from scim2_models import InvalidValueException, UniquenessException

from accounts import services as account_services
from accounts import tokens
from accounts.models import DirectoryGroup, GroupMembership, ScimToken, Source, User
from accounts.scim.resources import GroupFields, UserFields, visible_users
from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected

# The columns a User document writes, besides `active` (which goes through accounts.directory).
USER_COLUMNS = ("username", "display_name", "first_name", "last_name", "email", "directory_attributes")


@dataclass(frozen=True)
class IssuedScimToken:
    token: ScimToken
    secret: str  # shown once, to the admin who made it, then gone


def create_token(*, name: str, directory_name: str, actor: User | None) -> IssuedScimToken:
    """Mint a provisioning token for one directory. The secret exists only in the return value."""
    name, directory_name = name.strip(), directory_name.strip() or "default"
    if not name:
        raise RequestRejected("A SCIM token needs a name.")
    if ScimToken.objects.filter(name__iexact=name).exists():
        raise RequestRejected(f"A SCIM token named “{name}” already exists.")
    raw, lookup, digest = tokens.mint(prefix=tokens.SCIM_PREFIX)
    with transaction.atomic():
        token = ScimToken.objects.create(
            name=name, directory=directory_name, lookup=lookup, digest=digest, created_by=actor
        )
        audit.record(actor, AuditAction.SCIM_TOKEN_CREATED, target=token, directory=directory_name)
    return IssuedScimToken(token=token, secret=raw)


def revoke_token(token: ScimToken, *, actor: User | None) -> bool:
    if token.revoked_at is not None:
        return False
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, AuditAction.SCIM_TOKEN_REVOKED, target=token, directory=token.directory)
    return True


# ------------------------------------------------------------------------------------------------ users


def create_user(token: ScimToken, fields: UserFields) -> User:
    """POST /Users: a new person, or the SSO-created person with this externalId, now provisioned."""
    with transaction.atomic():
        _take_over(token, fields.external_id)
        linked = _linkable(token.directory, fields.external_id)
        if linked is not None:
            return update_user(token, linked, fields, linked=True)
        _check_username(fields.username, exclude=None)
        active = fields.active is not False
        user = User(
            directory=token.directory,
            external_id=fields.external_id or "",
            source=Source.SCIM,
            status=User.Status.ACTIVE if active else User.Status.DISABLED,
            is_active=active,
        )
        _assign(user, fields)
        user.set_unusable_password()  # people sign in through SSO; Okta's pushed password is dropped
        _save(user, fields)
        audit.record(None, AuditAction.USER_CREATED, target=user, via="scim", token=token.name, active=active)
    return user


def update_user(token: ScimToken, user: User, fields: UserFields, *, linked: bool = False) -> User:
    """PUT, PATCH, or a POST that links: store the document's fields, then apply `active`."""
    with transaction.atomic():
        _check_username(fields.username, exclude=user.pk)
        before = {column: getattr(user, column) for column in (*USER_COLUMNS, "external_id")}
        if fields.external_id is not None and fields.external_id != user.external_id:
            _take_over(token, fields.external_id)
            _check_external_id(User, token.directory, fields.external_id, exclude=user.pk)
            user.external_id = fields.external_id
        _assign(user, fields)
        if linked:
            # Provisioned from now on: a second POST with this externalId is then a duplicate (409).
            before["source"], user.source = user.source, Source.SCIM
        changed = [column for column, value in before.items() if getattr(user, column) != value]
        if changed:
            _save(user, fields, update_fields=changed)
        if changed or linked:
            audit.record(
                None,
                AuditAction.USER_UPDATED,
                target=user,
                via="scim",
                token=token.name,
                changed=changed,
                linked=linked,
            )
        _apply_active(token, user, fields.active)
    return user


def patch_user(token: ScimToken, user: User, edit: Callable[[User], UserFields]) -> User:
    """PATCH: read, edit and write under a row lock, so two PATCHes at once never undo each other."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        return update_user(token, locked, edit(locked))


def delete_user(token: ScimToken, user: User) -> None:
    """DELETE /Users/{id}: a departed tombstone. Its userName is freed for new people.

    The tombstone keeps its externalId, the directory's immutable id: registries name people by
    it, so their credentials stay linked to someone who departed (and are flagged as such) rather
    than to nobody. Only that same directory object coming back takes the id over (_take_over).
    """
    with transaction.atomic():
        old_username = user.username
        memberships = GroupMembership.objects.filter(user=user).delete()[0]
        user.username = f"deleted-{user.scim_id}"
        user.save(update_fields=["username"])
        account_services.deactivate_user(
            user, actor=None, reason=f"deleted by SCIM ({token.name})", departed=True
        )
        audit.record(
            None,
            AuditAction.USER_DELETED,
            target=user,
            via="scim",
            token=token.name,
            username=old_username,
            external_id=user.external_id,
            memberships_removed=memberships,
        )


def _take_over(token: ScimToken, external_id: str | None) -> None:
    """A departed tombstone's externalId, provisioned again (the directory restored the object): the
    new account takes it, and what registries name by it links to the person who is back."""
    if not external_id:
        return
    tombstones = User.objects.filter(
        directory=token.directory, external_id=external_id, status=User.Status.DEPARTED
    )
    for tombstone in tombstones.select_for_update():
        tombstone.external_id = ""
        tombstone.save(update_fields=["external_id"])
        audit.record(
            None,
            AuditAction.USER_UPDATED,
            target=tombstone,
            via="scim",
            token=token.name,
            changed=["external_id"],
            released_external_id=external_id,
        )


def _linkable(directory_name: str, external_id: str | None) -> User | None:
    """The person a sign-in already created with this externalId; a SCIM-made one is a duplicate POST."""
    if not external_id:
        return None
    existing = visible_users(directory_name).filter(external_id=external_id).first()
    if existing is None:
        return None
    if existing.source == Source.SCIM:
        raise UniquenessException(detail="a user with this externalId exists")
    return existing


def _assign(user: User, fields: UserFields) -> None:
    user.username, user.display_name = fields.username, fields.display_name
    user.first_name, user.last_name, user.email = fields.first_name, fields.last_name, fields.email
    user.directory_attributes = fields.attributes


def _save(user: User, fields: UserFields, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            user.save(update_fields=update_fields)
    except IntegrityError:
        # Two clients racing for one userName or externalId: the loser gets what a check would have said.
        raise UniquenessException(detail="userName or externalId is taken") from None


def _check_username(username: str, *, exclude: int | None) -> None:
    # Usernames are unique across Customs, so a clash may be with another directory's person; the
    # answer says only "taken", never whose.
    clash = User.objects.filter(username__iexact=username)
    if clash.exclude(pk=exclude or 0).exists():
        raise UniquenessException(detail="userName is taken")


def _check_external_id(model: Any, directory_name: str, external_id: str, *, exclude: int | None) -> None:
    if (
        external_id
        and model.objects.filter(directory=directory_name, external_id=external_id)
        .exclude(pk=exclude)
        .exists()
    ):
        raise UniquenessException(detail="externalId is taken")


def _apply_active(token: ScimToken, user: User, active: bool | None) -> None:
    reason = f"SCIM ({token.name}) set active={active}"
    if active is False:
        account_services.deactivate_user(user, actor=None, reason=reason, departed=False)
    elif active is True and user.status == User.Status.DISABLED:
        account_services.reactivate_user(user, actor=None, reason=reason)


# ----------------------------------------------------------------------------------------------- groups


def create_group(token: ScimToken, fields: GroupFields) -> DirectoryGroup:
    """POST /Groups: a new group, or the one sign-ins made from a groups claim with this externalId."""
    with transaction.atomic():
        existing = None
        if fields.external_id:
            existing = DirectoryGroup.objects.filter(
                directory=token.directory, external_id=fields.external_id
            ).first()
        if existing is not None:
            if existing.source == Source.SCIM:
                raise UniquenessException(detail="a group with this externalId exists")
            return update_group(token, existing, fields, linked=True)
        group = DirectoryGroup(
            directory=token.directory, display_name=fields.display_name, source=Source.SCIM
        )
        # Okta sends no externalId; our id stands in, so the unique (directory, external_id) holds.
        group.external_id = fields.external_id or str(group.scim_id)
        group.save()
        added, _ = _set_members(token, group, fields.members)
        audit.record(
            None, AuditAction.GROUP_CREATED, target=group, via="scim", token=token.name, members_added=added
        )
    return group


def update_group(
    token: ScimToken, group: DirectoryGroup, fields: GroupFields, *, linked: bool = False
) -> DirectoryGroup:
    with transaction.atomic():
        changed = []
        if fields.display_name != group.display_name:
            group.display_name = fields.display_name
            changed.append("display_name")
        if fields.external_id and fields.external_id != group.external_id:
            _check_external_id(DirectoryGroup, token.directory, fields.external_id, exclude=group.pk)
            group.external_id = fields.external_id
            changed.append("external_id")
        group.synced_at = timezone.now()
        group.save(update_fields=[*changed, "synced_at"])
        added, removed = _set_members(token, group, fields.members)
        if changed or added or removed or linked:
            audit.record(
                None,
                AuditAction.GROUP_UPDATED,
                target=group,
                via="scim",
                token=token.name,
                changed=changed,
                members_added=added,
                members_removed=removed,
                linked=linked,
            )
    return group


def patch_group(
    token: ScimToken, group: DirectoryGroup, edit: Callable[[DirectoryGroup], GroupFields]
) -> DirectoryGroup:
    """PATCH under a row lock: clients send membership changes for one group in parallel, and each
    is applied to the member list as it stands, so without the lock one could drop another's member."""
    with transaction.atomic():
        locked = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
        return update_group(token, locked, edit(locked))


def delete_group(token: ScimToken, group: DirectoryGroup) -> None:
    """DELETE /Groups/{id}: the group, its memberships and the portal roles bound to it go."""
    with transaction.atomic():
        bindings = sorted(group.role_bindings.values_list("role", flat=True))
        members = group.memberships.count()
        audit.record(
            None,
            AuditAction.GROUP_DELETED,
            target=group,
            via="scim",
            token=token.name,
            external_id=group.external_id,
            members=members,
            role_bindings=bindings,
        )
        group.delete()


def _set_members(
    token: ScimToken, group: DirectoryGroup, wanted_ids: list[uuid.UUID] | None
) -> tuple[list[str], list[str]]:
    """Make the group's members exactly these people. Returns the SCIM ids added and removed."""
    if wanted_ids is None:
        return [], []
    wanted = {user.scim_id: user for user in visible_users(token.directory).filter(scim_id__in=wanted_ids)}
    if unknown := set(wanted_ids) - set(wanted):
        raise InvalidValueException(detail=f"unknown member ids: {', '.join(sorted(map(str, unknown)))}")
    current = dict(group.memberships.values_list("user__scim_id", "pk"))
    now = timezone.now()
    added = [wanted[sid] for sid in wanted if sid not in current]
    removed = [sid for sid in current if sid not in wanted]
    GroupMembership.objects.bulk_create(
        [GroupMembership(user=user, group=group, source=Source.SCIM, synced_at=now) for user in added]
    )
    GroupMembership.objects.filter(group=group, user__scim_id__in=removed).delete()
    # Members a sign-in added are the provisioning client's from now on: sign-ins leave SCIM's alone.
    group.memberships.exclude(source=Source.SCIM).update(source=Source.SCIM, synced_at=now)
    return sorted(str(user.scim_id) for user in added), sorted(str(sid) for sid in removed)
