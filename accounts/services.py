"""State changes to people, roles and tokens. Every door (pages, API, admin, commands) calls these."""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Field
from django.utils import timezone

from accounts import tokens
from accounts.models import DirectoryGroup, PersonalToken, RobotToken, RoleBinding, Source, User
from accounts.roles import Role
from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalToken
    secret: str  # shown once, to the owner, then gone


def create_token(
    owner: User,
    *,
    actor: User | None,
    name: str,
    kind: str = PersonalToken.Kind.API,
    scopes: list[str] | None = None,
    days: int | None = None,
) -> IssuedToken:
    """Mint a personal token. The secret exists only in the return value."""
    name, kind = name.strip(), PersonalToken.Kind(kind)
    scopes = sorted(set(scopes or [PersonalToken.SCOPES[kind][0]]))
    _check_token_request(owner, name, kind, scopes, days)
    raw, lookup, digest = tokens.mint()
    expires_at = timezone.now() + timedelta(days=days or settings.TOKEN_DEFAULT_DAYS)
    with transaction.atomic():
        token = PersonalToken.objects.create(
            owner=owner,
            name=name,
            kind=kind,
            scopes=scopes,
            lookup=lookup,
            digest=digest,
            expires_at=expires_at,
        )
        audit.record(
            actor,
            AuditAction.TOKEN_CREATED,
            target=token,
            owner=owner.get_username(),
            kind=kind,
            scopes=scopes,
            expires_at=expires_at,
        )
    return IssuedToken(token=token, secret=raw)


def _check_token_request(owner: User, name: str, kind: str, scopes: list[str], days: int | None) -> None:
    if owner.status != User.Status.ACTIVE:
        raise RequestRejected(f"{owner} is {owner.status}; tokens can only be issued to active people")
    if not name:
        raise RequestRejected("give the token a name, so you can tell it apart later")
    allowed = PersonalToken.SCOPES[PersonalToken.Kind(kind)]
    if unknown := [s for s in scopes if s not in allowed]:
        raise RequestRejected(
            f"{kind} tokens accept the scopes {', '.join(allowed)}; not {', '.join(unknown)}"
        )
    if days is not None and not 1 <= days <= settings.TOKEN_MAX_DAYS:
        raise RequestRejected(f"a token lasts from 1 to {settings.TOKEN_MAX_DAYS} days")


def revoke_token(token: PersonalToken, *, actor: User | None) -> bool:
    """Revoke at once. Returns False when it was already revoked. Safe to repeat."""
    with transaction.atomic():
        if not PersonalToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now()):
            return False
        token.refresh_from_db(fields=["revoked_at"])
        audit.record(actor, AuditAction.TOKEN_REVOKED, target=token, owner=token.owner.get_username())
    return True


def authenticate_token(raw: str, *, kind: PersonalToken.Kind) -> PersonalToken | None:
    """The active token of this kind the secret belongs to, with its owner, or None. One indexed read."""
    if not tokens.looks_like_token(raw):
        return None
    return accept_token(raw, active_token(raw[: tokens.LOOKUP_LENGTH], kind=kind))


def active_token(lookup: str, *, kind: PersonalToken.Kind) -> PersonalToken | None:
    """The not-revoked, unexpired token of this kind with this lookup prefix, its owner loaded."""
    # The kind is part of the lookup, not checked afterwards: a registry token tried on the API
    # must not be marked used, or hygiene reports would count refused attempts as activity.
    return _active_with_parent(PersonalToken, "owner", lookup, kind=str(kind))


def accept_token(raw: str, token: PersonalToken | None) -> PersonalToken | None:
    """The token when the secret is its own and its owner may still sign in; its use noted."""
    if token is None or token.expires_at <= timezone.now() or not tokens.matches(raw, token.digest):
        return None
    if token.owner.status != User.Status.ACTIVE or not token.owner.is_active:
        return None
    _note_use(token)
    return token


# Every registry login and API call reads one token and its owner. Built through the ORM, that
# query costs about three times what PostgreSQL takes to answer it (bench/tokens.py), so it is
# written once per process from the models' own metadata and only executed per request; the
# rows become model instances exactly as the ORM would make them (test_fast_token_lookup_*).
TokenModel = TypeVar("TokenModel", PersonalToken, RobotToken)


def _active_with_parent(
    model: type[TokenModel], relation: str, lookup: str, **equal: str
) -> TokenModel | None:
    """The one not-revoked, unexpired row with this lookup prefix, its `relation` loaded with it."""
    sql, fields, parent_fields = _active_with_parent_sql(model, relation, tuple(sorted(equal)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [lookup, *(equal[name] for name in sorted(equal)), timezone.now()])
        row = cursor.fetchone()
    if row is None:
        return None
    own, parents = row[: len(fields)], row[len(fields) :]
    token = model.from_db(connection.alias, [f.attname for f in fields], _converted(fields, own))
    if parents[0] is not None:  # the relation is nullable for robots whose group is gone
        parent = _parent_model(model, relation).from_db(
            connection.alias, [f.attname for f in parent_fields], _converted(parent_fields, parents)
        )
        setattr(token, relation, parent)
    return token


@functools.cache
def _active_with_parent_sql(
    model: type[models.Model], relation: str, equal: tuple[str, ...]
) -> tuple[str, list[Field[Any, Any]], list[Field[Any, Any]]]:
    quote = connection.ops.quote_name
    fields = list(model._meta.concrete_fields)
    link = model._meta.get_field(relation)
    assert isinstance(link, models.ForeignKey)
    parent = _parent_model(model, relation)
    parent_fields = list(parent._meta.concrete_fields)
    columns = [f"t.{quote(f.column)}" for f in fields] + [f"p.{quote(f.column)}" for f in parent_fields]
    conditions = [f"t.{quote(name)} = %s" for name in ("lookup", *equal)]
    pk_column = parent._meta.pk.column if parent._meta.pk else "id"
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} t "  # noqa: S608  (names from _meta)
        f"LEFT JOIN {quote(parent._meta.db_table)} p ON p.{quote(pk_column)} = t.{quote(link.column)} "
        f"WHERE {' AND '.join(conditions)} AND t.revoked_at IS NULL AND t.expires_at > %s LIMIT 1"
    )
    return sql, fields, parent_fields


def _parent_model(model: type[models.Model], relation: str) -> type[models.Model]:
    related = model._meta.get_field(relation).related_model
    assert isinstance(related, type)
    assert issubclass(related, models.Model)
    return related


def _converted(fields: list[Field[Any, Any]], values: tuple[Any, ...]) -> list[Any]:
    """Values as the ORM hands them over: JSON decoded, encrypted text decrypted, and whatever the
    database backend converts (SQLite returns times as text, PostgreSQL needs nothing)."""
    converted = []
    for field, value in zip(fields, values, strict=True):
        column, converters = _converters_of(field)
        for convert in converters:
            value = convert(value, column, connection)
        converted.append(value)
    return converted


@functools.cache
def _converters_of(field: Field[Any, Any]) -> tuple[Any, tuple[Any, ...]]:
    """The column expression and the converters the ORM's compiler would apply to it, in its order."""
    column = field.get_col(field.model._meta.db_table)
    return column, (*connection.ops.get_db_converters(column), *field.get_db_converters(connection))  # type: ignore[attr-defined]  # in Django, not its stubs


def _note_use(token: PersonalToken | RobotToken) -> None:
    # At most one write per token per TOKEN_LAST_USED_RESOLUTION: a busy CI robot asks for a
    # registry token on every pull, and hygiene reports only need "used recently".
    now = timezone.now()
    if token.last_used_at and now - token.last_used_at < settings.TOKEN_LAST_USED_RESOLUTION:
        return
    type(token)._default_manager.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


# --- robot tokens: registry credentials owned by a directory group --------------------------------


@dataclass(frozen=True)
class IssuedRobotToken:
    robot: RobotToken
    secret: str  # shown once, to the admin who made it, then gone


def create_robot_token(
    group: DirectoryGroup, *, actor: User | None, name: str, description: str = "", days: int | None = None
) -> IssuedRobotToken:
    """Mint a robot token for a group. The secret exists only in the return value."""
    name = name.strip()
    _check_robot_request(name, days)
    raw, lookup, digest = tokens.mint(prefix=tokens.ROBOT_PREFIX)
    expires_at = timezone.now() + timedelta(days=days or settings.TOKEN_DEFAULT_DAYS)
    try:
        with transaction.atomic():
            robot = RobotToken.objects.create(
                group=group,
                name=name,
                description=description.strip(),
                lookup=lookup,
                digest=digest,
                created_by=actor,
                expires_at=expires_at,
            )
            audit.record(
                actor,
                AuditAction.ROBOT_TOKEN_CREATED,
                target=robot,
                group=group.external_id,
                username=robot.username,
                expires_at=expires_at,
            )
    except IntegrityError:  # two admins picked the same name at the same moment
        raise RequestRejected(f"a robot named “{name}” already exists; names are never reused") from None
    return IssuedRobotToken(robot=robot, secret=raw)


def _check_robot_request(name: str, days: int | None) -> None:
    if not re.match(RobotToken.NAME_PATTERN, name) or len(name) > 64:
        raise RequestRejected(
            "a robot name is up to 64 lowercase letters and digits joined by single - _ or ."
            " (e.g. ci-payments)"
        )
    if RobotToken.objects.filter(name=name).exists():
        raise RequestRejected(f"a robot named “{name}” already exists; names are never reused")
    if days is not None and not 1 <= days <= settings.TOKEN_MAX_DAYS:
        raise RequestRejected(f"a robot token lasts from 1 to {settings.TOKEN_MAX_DAYS} days")


def revoke_robot_token(robot: RobotToken, *, actor: User | None) -> bool:
    """Revoke at once. Returns False when it was already revoked. Safe to repeat."""
    with transaction.atomic():
        if not RobotToken.objects.filter(pk=robot.pk, revoked_at=None).update(revoked_at=timezone.now()):
            return False
        robot.refresh_from_db(fields=["revoked_at"])
        audit.record(actor, AuditAction.ROBOT_TOKEN_REVOKED, target=robot, username=robot.username)
    return True


def set_group_owner(group: DirectoryGroup, owner: User | None, *, actor: User | None) -> None:
    """Name who takes over the group's robots when the person who made them leaves (or nobody)."""
    if owner is not None and not owner.may_sign_in:
        raise RequestRejected(f"{owner} cannot sign in: choose someone still active")
    with transaction.atomic():
        DirectoryGroup.objects.filter(pk=group.pk).update(owner=owner)
        group.owner = owner
        audit.record(actor, AuditAction.GROUP_OWNER_SET, target=group, owner=owner.username if owner else "")


def authenticate_robot(raw: str) -> RobotToken | None:
    """The active robot the secret belongs to, with its group, or None. One indexed read."""
    if not tokens.looks_like_token(raw, tokens.ROBOT_PREFIX):
        return None
    return accept_robot(raw, active_robot(raw[: tokens.LOOKUP_LENGTH]))


def active_robot(lookup: str) -> RobotToken | None:
    """The not-revoked, unexpired robot with this lookup prefix, its group loaded."""
    return _active_with_parent(RobotToken, "group", lookup)


def accept_robot(raw: str, robot: RobotToken | None) -> RobotToken | None:
    # A robot whose group was deleted grants nothing, so it is refused like a revoked one.
    if robot is None or robot.group_id is None or robot.expires_at <= timezone.now():
        return None
    if not tokens.matches(raw, robot.digest):
        return None
    _note_use(robot)
    return robot


def bind_role(group: DirectoryGroup, role: str, *, actor: User | None) -> RoleBinding:
    """Give every member of a directory group a portal role."""
    role = Role(role)
    try:
        with transaction.atomic():
            binding = RoleBinding.objects.create(group=group, role=role, created_by=actor)
            audit.record(
                actor, AuditAction.ROLE_BINDING_CREATED, target=binding, group=group.external_id, role=role
            )
    except IntegrityError:
        raise RequestRejected(f"{group} already holds the {role.label} role") from None
    return binding


def unbind_role(binding: RoleBinding, *, actor: User | None) -> None:
    with transaction.atomic():
        audit.record(
            actor,
            AuditAction.ROLE_BINDING_DELETED,
            target=binding,
            group=binding.group.external_id,
            role=binding.role,
        )
        binding.delete()


def ensure_break_glass_admin() -> tuple[User, str | None]:
    """Create the local superuser on first start. Returns the password only when it was just made."""
    username = settings.BREAK_GLASS_USERNAME
    existing = User.objects.filter(username=username).first()
    if existing and not (existing.is_superuser and existing.source == Source.LOCAL):
        # Never report someone else's account as the break-glass admin: the operator would believe
        # they have a way in when they do not.
        raise RequestRejected(
            f"{username!r} already exists and is not a local superuser; "
            "set CUSTOMS_BREAK_GLASS_USERNAME to another name"
        )
    if existing:
        return existing, None
    password = secrets.token_urlsafe(18)
    with transaction.atomic():
        user = User.objects.create_superuser(username=username, email="", password=password)
        user.source = Source.LOCAL
        user.display_name = "Break-glass admin"
        user.save(update_fields=["source", "display_name"])
        audit.record(None, AuditAction.BREAK_GLASS_CREATED, target=user)
    return user, password


# --- leaving: disabled or departed in the directory -----------------------------------------


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

    Customs itself is already closed to them when this runs. The task is named, not imported:
    `accounts` knows nothing of registries. It plans and runs an offboarding unless one is
    already under way (an admin's, whose confirmation is what called this).
    """
    audit.record(None, AuditAction.OFFBOARDING_REQUESTED, target=user, reason=reason, status=user.status)
    # By name through a signature, not send_task: it resolves to the registered task where there is
    # one, so task_always_eager (tests, the embedded run) runs it here instead of leaving a message.
    current_app.signature("registries.tasks.offboard_from_directory", args=[user.pk, reason]).apply_async()
