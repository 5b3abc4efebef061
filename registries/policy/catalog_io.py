"""The base-image catalog as code, and every change to it.

The file (YAML) is a list of entries under `base_images:`:

    base_images:
      - name: docker.io/library/python        # the normalised repository, nothing else
        tags: ["3.12-*", "3.13-*"]             # glob patterns; omitted: any tag
        digests: ["sha256:…"]                  # pinned digests; omitted: any digest
        status: approved                       # approved | deprecated | banned; omitted: approved
        replacement: docker.io/library/python:3.13-slim
        max_age_days: 180
        description: …                         # shown to developers
        notes: …                               # for the catalog's keepers
        owner: <directory group external id>
        mirrors:
          - {registry: <Customs registry name>, repository: base/python, region: westeurope}

Keys Customs does not know are kept with the entry (`BaseImage.extra`) and written back on export.

An import is all or nothing. The whole file is read and checked first (every error names its line);
only then are entries written, in one transaction. An entry the file names is set to exactly what the
file says: a key left out means its default (no tag patterns, no mirrors, no owner, ...). Entries the
file does not name are kept, unless `prune` (the command's --prune) is given, which deletes them: the
file then is the whole catalog. Merge is the default so that a partial file, or a team's own slice of
the catalog, can never wipe out the rest by accident.

Pages, the API and the commands all change the catalog through save_base_image, delete_base_image and
import_catalog here, so every door leaves the same audit trail, in the file's own shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from accounts.models import DirectoryGroup, User
from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected
from registries.models import BaseImage, BaseImageMirror, Registry
from registries.patterns import is_valid_repository_name
from registries.policy.references import DIGEST_HEX_LENGTH, InvalidReference, Reference, parse

KNOWN_KEYS = (
    "name",
    "tags",
    "digests",
    "status",
    "replacement",
    "max_age_days",
    "description",
    "notes",
    "owner",
    "mirrors",
)
MIRROR_KEYS = ("registry", "repository", "region")
STATUSES = tuple(BaseImage.Status.values)
APPROVED = str(BaseImage.Status.APPROVED.value)  # plain text: specs are dumped to YAML and the audit trail
NAME_LIMIT, REPLACEMENT_LIMIT, REGION_LIMIT = 500, 600, 64  # the columns' lengths
MAX_AGE_LIMIT = 36_500  # a century: anything longer is a typo, and the column is a 32-bit integer
HEADER = "# The base-image catalog. Load it with: manage.py import_base_images FILE [--prune]\n"


class InvalidValue(ValueError):
    """One value is wrong; the message says what to write instead."""


class CatalogFileError(RequestRejected):
    """A catalog file that cannot be imported. Nothing was changed."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.problem = message


# --- One entry, detached from the ORM -------------------------------------------------------------


@dataclass(frozen=True)
class MirrorSpec:
    registry: Registry
    repository: str
    region: str = ""


@dataclass(frozen=True)
class EntrySpec:
    """What an entry should be. Equal specs mean nothing to write (and nothing to audit)."""

    name: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    status: str = APPROVED
    replacement: str = ""
    max_age_days: int | None = None
    description: str = ""
    notes: str = ""
    owner_group: DirectoryGroup | None = None
    mirrors: tuple[MirrorSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Mirrors in the model's order, so the order they were typed in is not a change.
        ordered = tuple(sorted(self.mirrors, key=lambda m: (m.region, m.registry.name)))
        object.__setattr__(self, "mirrors", ordered)

    @classmethod
    def of(cls, entry: BaseImage) -> EntrySpec:
        """The entry as stored; load it with `entries()` to read owner and mirrors without queries."""
        mirrors = (MirrorSpec(m.registry, m.repository, m.region) for m in entry.mirrors.all())
        return cls(
            name=entry.name,
            tags=tuple(entry.tags),
            digests=tuple(entry.digests),
            status=entry.status,
            replacement=entry.replacement,
            max_age_days=entry.max_age_days,
            description=entry.description,
            notes=entry.notes,
            owner_group=entry.owner_group,
            mirrors=tuple(mirrors),
            extra=dict(entry.extra),
        )

    def document(self) -> dict[str, Any]:
        """The entry as the catalog file writes it: defaults left out, unknown keys last."""
        written: dict[str, Any] = {"name": self.name}
        optional: dict[str, Any] = {
            "tags": list(self.tags),
            "digests": list(self.digests),
            "status": self.status,
            "replacement": self.replacement,
            "max_age_days": self.max_age_days,
            "description": self.description,
            "notes": self.notes,
            "owner": self.owner_group.external_id if self.owner_group else None,
            "mirrors": [_mirror_document(m) for m in self.mirrors],
        }
        written |= {key: value for key, value in optional.items() if value not in (None, "", [])}
        return written | {key: self.extra[key] for key in sorted(self.extra)}


def _mirror_document(mirror: MirrorSpec) -> dict[str, str]:
    written = {"registry": mirror.registry.name, "repository": mirror.repository}
    return written | ({"region": mirror.region} if mirror.region else {})


def entries() -> QuerySet[BaseImage]:
    """Every entry with its owner and mirrors, in two queries."""
    mirrors = BaseImageMirror.objects.select_related("registry")
    return BaseImage.objects.select_related("owner_group").prefetch_related(Prefetch("mirrors", mirrors))


# --- Checking values (shared by the file, the forms and the API) ----------------------------------


def check_name(text: str) -> str:
    """A catalog name is a repository written the way docker normalises it, e.g. docker.io/library/python."""
    reference = _reference(text)
    if len(text) > NAME_LIMIT:
        raise InvalidValue(f"a name is at most {NAME_LIMIT} characters")
    if reference.tag or reference.digest:
        raise InvalidValue(
            f"{text!r} has a tag or digest: the name is the repository alone "
            f"({reference.repository}); tags go under tags, digests under digests"
        )
    if text != reference.repository:
        raise InvalidValue(f"write the normalised repository {reference.repository!r}, not {text!r}")
    return text


def check_replacement(text: str) -> str:
    """A fully written reference (tag or digest allowed), so developers can copy it as it is."""
    if not text:
        return text
    reference = _reference(text)
    if len(text) > REPLACEMENT_LIMIT:
        raise InvalidValue(f"a replacement is at most {REPLACEMENT_LIMIT} characters")
    if text != str(reference):
        raise InvalidValue(f"write the normalised reference {str(reference)!r}, not {text!r}")
    return text


def _reference(text: str) -> Reference:
    try:
        return parse(text)
    except InvalidReference as exc:
        # The parser's reasons mostly quote the text already; don't say it twice.
        reason = str(exc) if repr(text) in str(exc) else f"{text!r}: {exc}"
        raise InvalidValue(reason) from None


# A tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a pattern adds fnmatch's * and ? and [...] classes
# (closed, and holding only tag characters: anything else could never match a tag).
_TAG_GLOB = re.compile(r"(?:[A-Za-z0-9_.*?-]|\[!?[A-Za-z0-9_.-]+\])+")


def check_tag_pattern(text: str) -> str:
    if not _TAG_GLOB.fullmatch(text) or len(text) > 128:
        raise InvalidValue(
            f"tag pattern {text!r}: use letters, digits, _ . - and the globs * ? [...] "
            "(at most 128 characters)"
        )
    if text[0] in ".-":
        raise InvalidValue(f"tag pattern {text!r} can never match: tags start with a letter, digit or _")
    return text


def check_digest(text: str) -> str:
    algorithm, _, encoded = text.partition(":")
    # As references (go-digest) validate them: a pinned digest no reference can carry would never match.
    length = DIGEST_HEX_LENGTH.get(algorithm)
    if length is None or not re.fullmatch(f"[0-9a-f]{{{length}}}", encoded):
        raise InvalidValue(
            f"{text!r} is not a digest: sha256:, sha384: or sha512: and that many lowercase hex digits"
        )
    return text


def check_max_age(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_AGE_LIMIT:
        raise InvalidValue(f"max_age_days must be between 1 and {MAX_AGE_LIMIT}, not {value}")
    return value


def check_mirror_repository(text: str) -> str:
    if not is_valid_repository_name(text):
        raise InvalidValue(f"{text!r} is not a repository path (lowercase, e.g. base/python)")
    return text


def check_region(text: str) -> str:
    if len(text) > REGION_LIMIT:
        raise InvalidValue(f"a region is at most {REGION_LIMIT} characters")
    return text


def check_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Unknown keys are kept as JSON; a known key or a value JSON cannot hold is refused."""
    for key, value in extra.items():
        if key in KNOWN_KEYS:
            raise InvalidValue(f"{key!r} is a catalog key, not an extra one")
        if problem := json_problem(value):
            raise InvalidValue(f"{key}: {problem}")
    return extra


def json_problem(value: Any) -> str:
    """Why a value cannot be kept as JSON, or "" when it can."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a number JSON can hold"
    if value is None or isinstance(value, str | bool | int | float):
        return ""
    if isinstance(value, list):
        return next((p for p in map(json_problem, value) if p), "")
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return "keys must be text"
        return next((p for p in map(json_problem, value.values()) if p), "")
    return f"a {type(value).__name__} cannot be kept; quote it to keep it as text"


def check_entry(spec: EntrySpec) -> None:
    """Every rule an entry must satisfy, whoever sends it. Raises RequestRejected naming the field."""
    checks: list[tuple[str, Any]] = [
        ("name", lambda: check_name(spec.name)),
        ("tags", lambda: [check_tag_pattern(t) for t in _distinct(spec.tags, "tag pattern")]),
        ("digests", lambda: [check_digest(d) for d in _distinct(spec.digests, "digest")]),
        ("status", lambda: check_status(spec.status)),
        ("replacement", lambda: check_replacement(spec.replacement)),
        ("max_age_days", lambda: check_max_age(spec.max_age_days)),
        ("mirrors", lambda: _check_mirrors(spec.mirrors)),
        ("extra", lambda: check_extra(spec.extra)),
    ]
    for name, check in checks:
        try:
            check()
        except InvalidValue as exc:
            raise RequestRejected(f"{name}: {exc}") from None


def _distinct(values: Iterable[str], what: str) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value in seen:
            raise InvalidValue(f"{what} {value!r} is listed twice")
        seen.append(value)
    return seen


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidValue(f"status {status!r}: use one of {', '.join(STATUSES)}")
    return status


def _check_mirrors(mirrors: Iterable[MirrorSpec]) -> None:
    registries: set[int] = set()
    for mirror in mirrors:
        check_mirror_repository(mirror.repository)
        check_region(mirror.region)
        if mirror.registry.pk in registries:
            raise InvalidValue(f"two mirrors in registry {mirror.registry.name}: keep one per registry")
        registries.add(mirror.registry.pk)


# --- Reading a catalog file -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    line: int
    spec: EntrySpec
    mirror_lines: dict[str, int]  # registry name: the line of its mirror, for errors found later


def parse_catalog(text: str) -> list[FileEntry]:
    """Read and check a whole catalog file; the first problem raises CatalogFileError with its line."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        # PyYAML checks a whole text for control characters before reading it; it gives a position.
        line = text[: exc.position].count("\n") + 1
        raise CatalogFileError(
            line, f"not valid YAML: character #x{exc.character:04x} is not allowed"
        ) from None
    try:
        return _FileReader(loader).entries()
    finally:
        loader.dispose()


class _FileReader:
    """Walks PyYAML's node tree rather than the loaded data: nodes know the line they came from."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.names: dict[str, int] = {}
        self.groups: dict[str, DirectoryGroup] = {}
        self.registries: dict[str, Registry] | None = None

    def entries(self) -> list[FileEntry]:
        root = self._root()
        items = self._mapping(root, "the file", allowed=("base_images",))
        if "base_images" not in items:
            raise CatalogFileError(_line(root), "the catalog is a mapping with a base_images: list")
        listed = items["base_images"][1]
        if not isinstance(listed, yaml.SequenceNode):
            raise CatalogFileError(_line(listed), "base_images must be a list of entries")
        return [self._entry(node) for node in listed.value]

    def _root(self) -> yaml.Node:
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise CatalogFileError(_error_line(exc), f"not valid YAML: {_yaml_problem(exc)}") from None
        if root is None:
            raise CatalogFileError(1, "the file is empty; a catalog starts with base_images:")
        return root

    def _mapping(
        self, node: yaml.Node, what: str, *, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's items by key (key node, value node); duplicate and non-text keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise CatalogFileError(_line(node), f"{what} must be a mapping of keys to values")
        self._construct_guarded(lambda: self.loader.flatten_mapping(node))  # resolves << merge keys
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._value(key_node)
            if not isinstance(key, str):
                raise CatalogFileError(_line(key_node), f"keys in {what} must be text, not {key!r}")
            if key in items:
                raise CatalogFileError(_line(key_node), f"{key!r} appears twice in {what}")
            if allowed is not None and key not in allowed:
                raise CatalogFileError(
                    _line(key_node), f"unknown key {key!r} in {what}; known: {', '.join(allowed)}"
                )
            items[key] = (key_node, value_node)
        return items

    def _value(self, node: yaml.Node) -> Any:
        return self._construct_guarded(lambda: self.loader.construct_object(node, deep=True))

    def _construct_guarded(self, construct: Any) -> Any:
        try:
            return construct()
        except yaml.MarkedYAMLError as exc:
            raise CatalogFileError(_error_line(exc), f"not valid YAML: {_yaml_problem(exc)}") from None

    # --- one entry

    def _entry(self, node: yaml.Node) -> FileEntry:
        items = self._mapping(node, "an entry")
        if "name" not in items:
            raise CatalogFileError(_line(node), "this entry has no name")
        name = self._checked(items["name"][1], "name", check_name)
        if name in self.names:
            raise CatalogFileError(
                _line(items["name"][1]), f"{name} is already listed at line {self.names[name]}"
            )
        self.names[name] = _line(items["name"][1])
        mirrors, mirror_lines = self._mirrors(items.get("mirrors"))
        spec = EntrySpec(
            name=name,
            tags=tuple(self._list(items.get("tags"), "tags", "a tag pattern", check_tag_pattern)),
            digests=tuple(self._list(items.get("digests"), "digests", "a digest", check_digest)),
            status=self._checked(items.get("status"), "status", check_status, APPROVED),
            replacement=self._checked(items.get("replacement"), "replacement", check_replacement, ""),
            max_age_days=self._max_age(items.get("max_age_days")),
            description=self._checked(items.get("description"), "description", str, ""),
            notes=self._checked(items.get("notes"), "notes", str, ""),
            owner_group=self._owner(items.get("owner")),
            mirrors=mirrors,
            extra=self._extra(items),
        )
        return FileEntry(line=_line(node), spec=spec, mirror_lines=mirror_lines)

    def _checked(
        self, item: tuple[yaml.Node, yaml.Node] | yaml.Node | None, key: str, check: Any, default: Any = None
    ) -> Any:
        """A text value put through `check`; None, or an explicit null, gives the default."""
        node = item[1] if isinstance(item, tuple) else item
        if node is None:
            return default
        value = self._value(node)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise CatalogFileError(_line(node), f"{key} must be text{_quote_hint(value)}")
        try:
            return check(value)
        except InvalidValue as exc:
            raise CatalogFileError(_line(node), str(exc)) from None

    def _list(self, item: tuple[yaml.Node, yaml.Node] | None, key: str, each: str, check: Any) -> list[str]:
        if item is None or self._value(item[1]) is None:
            return []
        node = item[1]
        if not isinstance(node, yaml.SequenceNode):
            raise CatalogFileError(_line(node), f"{key} must be a list, e.g. {key}: [...]")
        seen: dict[str, int] = {}
        for child in node.value:
            value = self._checked(child, each, check)
            if value in seen:
                raise CatalogFileError(_line(child), f"{value!r} is already listed at line {seen[value]}")
            seen[value] = _line(child)
        return list(seen)

    def _max_age(self, item: tuple[yaml.Node, yaml.Node] | None) -> int | None:
        value = None if item is None else self._value(item[1])
        if value is None:
            return None
        assert item is not None
        if isinstance(value, bool) or not isinstance(value, int):
            raise CatalogFileError(
                _line(item[1]), f"max_age_days must be a whole number of days, not {value!r}"
            )
        try:
            return check_max_age(value)
        except InvalidValue as exc:
            raise CatalogFileError(_line(item[1]), str(exc)) from None

    def _owner(self, item: tuple[yaml.Node, yaml.Node] | None) -> DirectoryGroup | None:
        external_id = self._checked(item, "owner", str, "")
        if not external_id:
            return None
        assert item is not None
        if external_id not in self.groups:
            found = list(DirectoryGroup.objects.filter(external_id=external_id)[:2])
            if len(found) != 1:
                problem = "no directory group has" if not found else "several directories have a group with"
                raise CatalogFileError(_line(item[1]), f"owner: {problem} the external id {external_id!r}")
            self.groups[external_id] = found[0]
        return self.groups[external_id]

    def _mirrors(
        self, item: tuple[yaml.Node, yaml.Node] | None
    ) -> tuple[tuple[MirrorSpec, ...], dict[str, int]]:
        if item is None or self._value(item[1]) is None:
            return (), {}
        node = item[1]
        if not isinstance(node, yaml.SequenceNode):
            raise CatalogFileError(_line(node), "mirrors must be a list of {registry, repository, region}")
        mirrors: list[MirrorSpec] = []
        registries: dict[str, int] = {}
        for child in node.value:
            mirror = self._mirror(child)
            if mirror.registry.name in registries:
                raise CatalogFileError(
                    _line(child),
                    f"{mirror.registry.name} already has a mirror of this entry at line "
                    f"{registries[mirror.registry.name]}: keep one per registry",
                )
            registries[mirror.registry.name] = _line(child)
            mirrors.append(mirror)
        return tuple(mirrors), registries

    def _mirror(self, node: yaml.Node) -> MirrorSpec:
        items = self._mapping(node, "a mirror", allowed=MIRROR_KEYS)
        for required in ("registry", "repository"):
            if required not in items:
                raise CatalogFileError(_line(node), f"this mirror has no {required}")
        registry_name = self._checked(items["registry"], "registry", str)
        registry = self._registry_named().get(registry_name)
        if registry is None:
            raise CatalogFileError(
                _line(items["registry"][1]), f"no registry named {registry_name!r} in Customs"
            )
        return MirrorSpec(
            registry=registry,
            repository=self._checked(items["repository"], "repository", check_mirror_repository),
            region=self._checked(items.get("region"), "region", check_region, ""),
        )

    def _registry_named(self) -> dict[str, Registry]:
        # Read once per file: a catalog names a handful of registries, many times over.
        if self.registries is None:
            self.registries = {registry.name: registry for registry in Registry.objects.all()}
        return self.registries

    def _extra(self, items: dict[str, tuple[yaml.Node, yaml.Node]]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for key, (_, value_node) in items.items():
            if key in KNOWN_KEYS:
                continue
            value = self._value(value_node)
            if problem := json_problem(value):
                raise CatalogFileError(_line(value_node), f"{key}: {problem}")
            extra[key] = value
        return extra


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _error_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return int(mark.line) + 1 if mark is not None else 1


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    context = f"{exc.context}: " if exc.context else ""
    return f"{context}{exc.problem or ''}".strip()


def _quote_hint(value: Any) -> str:
    if value is None:
        return ", but it is empty"
    if isinstance(value, bool | int | float):
        # YAML reads 3.10 as the number 3.1: a tag written bare silently changes.
        return f", not the {type(value).__name__} {value!r}: put it in quotes"
    return f", not {type(value).__name__}"


# --- Writing: one entry, a whole file -------------------------------------------------------------


def save_base_image(entry: BaseImage | None, spec: EntrySpec, *, actor: User | None) -> BaseImage:
    """Create (entry None) or change a catalog entry; audited with before and after."""
    check_entry(spec)
    names = BaseImage.objects.filter(name=spec.name)
    if (names.exclude(pk=entry.pk) if entry else names).exists():
        raise RequestRejected(f"name: {spec.name} is already in the catalog")
    _check_mirrors_unclaimed(spec, entry)
    try:
        with transaction.atomic():
            saved, _ = _write(entry, spec, actor=actor)
    except IntegrityError:
        # Two people saving the same name at once: the unique constraint decides, and says it as above.
        raise RequestRejected(f"name: {spec.name} is already in the catalog") from None
    return saved


def delete_base_image(entry: BaseImage, *, actor: User | None, **detail: Any) -> None:
    """Remove an entry and its mirrors; lineage that named it keeps its reference, without the link."""
    with transaction.atomic():
        before = EntrySpec.of(entry).document()
        audit.record(actor, AuditAction.BASE_IMAGE_DELETED, target=entry, before=before, **detail)
        entry.delete()
        _after_catalog_change(None)


def _check_mirrors_unclaimed(spec: EntrySpec, entry: BaseImage | None) -> None:
    """A registry's repository mirrors one catalog entry: otherwise which one it holds is a guess."""
    for mirror in spec.mirrors:
        taken = BaseImageMirror.objects.filter(registry=mirror.registry, repository=mirror.repository)
        other = (taken.exclude(base_image=entry) if entry else taken).select_related("base_image").first()
        if other is not None:
            raise RequestRejected(
                f"mirrors: {mirror.registry.name}/{mirror.repository} already mirrors {other.base_image.name}"
            )


def _write(
    entry: BaseImage | None, spec: EntrySpec, *, actor: User | None, **detail: Any
) -> tuple[BaseImage, str]:
    """Set an entry to `spec` and audit it; ("unchanged") when it already is. Call inside a transaction."""
    before = EntrySpec.of(entry) if entry else None
    if before == spec and entry is not None:
        return entry, "unchanged"
    now = timezone.now()
    entry = entry or BaseImage(created_at=now)
    entry.name, entry.tags, entry.digests = spec.name, list(spec.tags), list(spec.digests)
    entry.status, entry.replacement, entry.max_age_days = spec.status, spec.replacement, spec.max_age_days
    entry.description, entry.notes, entry.owner_group = spec.description, spec.notes, spec.owner_group
    entry.extra, entry.updated_at, entry.updated_by = dict(spec.extra), now, actor
    entry.save()
    _write_mirrors(entry, spec.mirrors)
    _after_catalog_change(entry.pk if spec.mirrors else None)
    action = AuditAction.BASE_IMAGE_UPDATED if before else AuditAction.BASE_IMAGE_CREATED
    previous = before.document() if before else {}
    audit.record(actor, action, target=entry, before=previous, after=spec.document(), **detail)
    return entry, "updated" if before else "created"


def _after_catalog_change(mirrored_entry_id: int | None) -> None:
    """Once committed: decide lineage again (bases changed for every image), and fill the entry's
    mirrors now rather than at the next schedule."""
    # Imported here: the task modules import the catalog code they run.
    from registries import tasks
    from registries.mirror.tasks import mirror_after_catalog_change

    transaction.on_commit(tasks.refresh_lineage.delay)
    if mirrored_entry_id is not None:
        transaction.on_commit(lambda: mirror_after_catalog_change(mirrored_entry_id))


def _write_mirrors(entry: BaseImage, mirrors: tuple[MirrorSpec, ...]) -> None:
    wanted = {mirror.registry.pk: mirror for mirror in mirrors}
    entry.mirrors.exclude(registry__in=list(wanted)).delete()
    for registry_id, mirror in wanted.items():
        BaseImageMirror.objects.update_or_create(
            base_image=entry,
            registry_id=registry_id,
            defaults={"repository": mirror.repository, "region": mirror.region},
        )


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        counts = (self.created, self.updated, self.unchanged, self.deleted)
        words = ("created", "updated", "unchanged", "deleted")
        return ", ".join(f"{len(names)} {word}" for names, word in zip(counts, words, strict=True))


def import_catalog(text: str, *, actor: User | None, prune: bool = False, source: str = "") -> ImportSummary:
    """Make the catalog say what the file says, or change nothing and raise CatalogFileError."""
    read = parse_catalog(text)
    detail = {"via": "import", **({"file": source} if source else {})}
    summary = ImportSummary()
    try:
        with transaction.atomic():
            stored = {entry.name: entry for entry in entries()}
            _check_file_mirrors(read, stored, prune=prune)
            for item in read:
                _, outcome = _write(stored.get(item.spec.name), item.spec, actor=actor, **detail)
                getattr(summary, outcome).append(item.spec.name)
            for name in sorted(set(stored) - {item.spec.name for item in read}) if prune else ():
                delete_base_image(stored[name], actor=actor, **detail)
                summary.deleted.append(name)
    except IntegrityError:
        # Someone saved an entry of the same name between our read and our write.
        raise RequestRejected(
            "the catalog changed while importing; nothing was imported, run it again"
        ) from None
    return summary


def _check_file_mirrors(read: list[FileEntry], stored: dict[str, BaseImage], *, prune: bool) -> None:
    """Mirrors the file gives to two entries, or to one the file leaves in place, are refused."""
    claimed: dict[tuple[int, str], str] = {}
    kept = set(stored) - {item.spec.name for item in read} if not prune else set()
    for name in kept:
        for kept_mirror in stored[name].mirrors.all():
            claimed[(kept_mirror.registry_id, kept_mirror.repository)] = f"{name} (kept: not in this file)"
    for item in read:
        for mirror in item.spec.mirrors:
            line = item.mirror_lines[mirror.registry.name]
            key = (mirror.registry.pk, mirror.repository)
            if key in claimed:
                where = f"{mirror.registry.name}/{mirror.repository}"
                raise CatalogFileError(line, f"{where} already mirrors {claimed[key]}")
            claimed[key] = f"{item.spec.name} (line {item.line})"


def export_catalog() -> str:
    """The whole catalog as a file import_catalog reads back to the same entries."""
    return dump_catalog(catalog_document())


def catalog_document() -> dict[str, list[dict[str, Any]]]:
    return {"base_images": [EntrySpec.of(entry).document() for entry in entries()]}


def dump_catalog(document: dict[str, list[dict[str, Any]]]) -> str:
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return HEADER + body
