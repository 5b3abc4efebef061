"""The catalog as code: a file round-trips (extra keys too), an invalid file is refused whole with the
line of its error and changes nothing, entries the file leaves out are kept unless pruned, every
change is audited, and the two commands report as commands do."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from accounts.models import DirectoryGroup
from portal import audit
from portal.errors import RequestRejected
from portal.models import AuditEvent
from registries.models import BaseImage, BaseImageMirror, Registry
from registries.policy import catalog_io
from registries.policy.catalog_io import CatalogFileError, EntrySpec, MirrorSpec
from tests import factories

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


@pytest.fixture
def places() -> dict[str, Any]:
    """Two registries that keep mirrors, and the team that owns the Python images."""
    return {
        "eu": factories.registry(name="cache-eu", region="westeurope"),
        "us": factories.registry(name="cache-us", region="eastus"),
        "team": factories.group(external_id="11111111-python-team", display_name="Python team"),
    }


def catalog_file(places: dict[str, Any]) -> str:
    return f"""\
# kept in git by the platform team
base_images:
  - name: docker.io/library/python
    tags: ["3.12-*", "3.13-*"]
    digests: ["{DIGEST}"]
    status: approved
    replacement: docker.io/library/python:3.13-slim
    max_age_days: 180
    description: CPython on Debian.
    notes: Rebuilt weekly.
    owner: {places["team"].external_id}
    mirrors:
      - {{registry: cache-us, repository: base/python, region: eastus}}
      - {{registry: cache-eu, repository: base/python, region: westeurope}}
    ticket: PLAT-123
    reviewers: [ana, bo]
    review: {{every_days: 90, last: "2024-05-01"}}
  - name: docker.io/library/node
    status: deprecated
    replacement: docker.io/library/node:22-alpine
"""


def stored_names() -> list[str]:
    return list(BaseImage.objects.order_by("name").values_list("name", flat=True))


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


# --- Round trip -----------------------------------------------------------------------------------


def test_a_file_is_imported_field_by_field(places: dict[str, Any]) -> None:
    summary = catalog_io.import_catalog(catalog_file(places), actor=None)

    assert summary.created == ["docker.io/library/python", "docker.io/library/node"]
    python = BaseImage.objects.get(name="docker.io/library/python")
    assert python.tags == ["3.12-*", "3.13-*"]
    assert python.digests == [DIGEST]
    assert python.status == BaseImage.Status.APPROVED
    assert python.replacement == "docker.io/library/python:3.13-slim"
    assert python.max_age_days == 180
    assert (python.description, python.notes) == ("CPython on Debian.", "Rebuilt weekly.")
    assert python.owner_group == places["team"]
    assert python.extra == {
        "ticket": "PLAT-123",
        "reviewers": ["ana", "bo"],
        "review": {"every_days": 90, "last": "2024-05-01"},
    }
    mirrors = {(m.registry.name, m.repository, m.region) for m in python.mirrors.select_related("registry")}
    assert mirrors == {("cache-eu", "base/python", "westeurope"), ("cache-us", "base/python", "eastus")}
    node = BaseImage.objects.get(name="docker.io/library/node")
    assert (node.tags, node.status, node.max_age_days, node.extra) == ([], "deprecated", None, {})


def test_export_then_import_changes_nothing_and_keeps_the_extra_keys(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    exported = catalog_io.export_catalog()
    audited = AuditEvent.objects.count()

    again = catalog_io.import_catalog(exported, actor=None)

    assert again.unchanged == ["docker.io/library/node", "docker.io/library/python"]
    assert again.created == again.updated == again.deleted == []
    assert AuditEvent.objects.count() == audited  # nothing changed, so nothing to audit
    assert catalog_io.export_catalog() == exported
    python = next(e for e in yaml.safe_load(exported)["base_images"] if e["name"].endswith("/python"))
    assert python["ticket"] == "PLAT-123"
    assert python["review"] == {"every_days": 90, "last": "2024-05-01"}
    assert python["owner"] == places["team"].external_id
    assert python["mirrors"][0] == {"registry": "cache-us", "repository": "base/python", "region": "eastus"}


def test_the_exported_file_reads_back_to_the_same_values(places: dict[str, Any]) -> None:
    original = catalog_file(places)
    catalog_io.import_catalog(original, actor=None)
    before = {e["name"]: e for e in yaml.safe_load(original)["base_images"]}
    after = {e["name"]: e for e in yaml.safe_load(catalog_io.export_catalog())["base_images"]}

    assert after == before  # key for key, the extra ones included


def test_an_export_leaves_defaults_out(places: dict[str, Any]) -> None:
    catalog_io.import_catalog("base_images:\n  - name: docker.io/library/busybox\n", actor=None)

    assert catalog_io.export_catalog().endswith(
        "base_images:\n- name: docker.io/library/busybox\n  status: approved\n"
    )


# --- Updating, merging and pruning ----------------------------------------------------------------


def test_a_changed_entry_is_updated_and_audited_with_before_and_after(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    changed = catalog_file(places).replace('["3.12-*", "3.13-*"]', '["3.13-*"]')

    summary = catalog_io.import_catalog(changed, actor=None, source="catalog.yaml")

    assert (summary.updated, summary.unchanged) == (["docker.io/library/python"], ["docker.io/library/node"])
    assert BaseImage.objects.get(name="docker.io/library/python").tags == ["3.13-*"]
    [event] = events("base_image.update")
    assert event.target_label == "docker.io/library/python"
    assert event.detail["before"]["tags"] == ["3.12-*", "3.13-*"]
    assert event.detail["after"]["tags"] == ["3.13-*"]
    assert event.detail["via"] == "import"
    assert event.detail["file"] == "catalog.yaml"
    assert event.actor_label == "system"


def test_creations_are_audited_once_per_entry(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)

    created = events("base_image.create")
    assert [e.target_label for e in created] == ["docker.io/library/python", "docker.io/library/node"]
    assert created[0].detail["after"]["mirrors"][1]["registry"] == "cache-eu"
    assert created[0].detail["before"] == {}


def test_a_key_left_out_of_an_entry_goes_back_to_its_default(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)

    catalog_io.import_catalog("base_images:\n  - name: docker.io/library/python\n", actor=None)

    python = BaseImage.objects.get(name="docker.io/library/python")
    assert (python.tags, python.digests, python.replacement, python.max_age_days) == ([], [], "", None)
    assert (python.owner_group, python.extra) == (None, {})
    assert not python.mirrors.exists()


def test_entries_the_file_leaves_out_are_kept_without_prune(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)

    summary = catalog_io.import_catalog("base_images:\n  - name: docker.io/library/golang\n", actor=None)

    assert summary.deleted == []
    assert stored_names() == [
        "docker.io/library/golang",
        "docker.io/library/node",
        "docker.io/library/python",
    ]


def test_prune_deletes_what_the_file_leaves_out_and_audits_it(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)

    summary = catalog_io.import_catalog(
        "base_images:\n  - name: docker.io/library/node\n    status: deprecated\n"
        "    replacement: docker.io/library/node:22-alpine\n",
        actor=None,
        prune=True,
    )

    assert (summary.deleted, summary.unchanged) == (["docker.io/library/python"], ["docker.io/library/node"])
    assert stored_names() == ["docker.io/library/node"]
    assert not BaseImageMirror.objects.exists()
    [event] = events("base_image.delete")
    assert event.target_label == "docker.io/library/python"
    assert event.detail["before"]["ticket"] == "PLAT-123"


def test_an_empty_list_with_prune_empties_the_catalog(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)

    summary = catalog_io.import_catalog("base_images: []\n", actor=None, prune=True)

    assert sorted(summary.deleted) == ["docker.io/library/node", "docker.io/library/python"]
    assert not BaseImage.objects.exists()


def test_a_mirror_can_move_from_one_entry_to_another_in_one_file(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    moved = (
        "base_images:\n"
        "  - name: docker.io/library/node\n"
        "    mirrors: [{registry: cache-eu, repository: base/python}]\n"
        "  - name: docker.io/library/python\n"
    )

    catalog_io.import_catalog(moved, actor=None)

    [mirror] = BaseImageMirror.objects.select_related("base_image", "registry")
    assert (mirror.base_image.name, mirror.registry.name) == ("docker.io/library/node", "cache-eu")


# --- Invalid files: refused whole, with the line --------------------------------------------------

VALID_FIRST = "base_images:\n  - name: docker.io/library/alpine\n"

INVALID: list[tuple[str, str, int, str]] = [
    ("empty", "", 1, "the file is empty"),
    ("comments only", "# nothing yet\n", 1, "the file is empty"),
    ("bad yaml", VALID_FIRST + '  - name: docker.io/library/x\n    tags: ["3.12-*"\n', 5, "not valid YAML"),
    ("bad indentation", VALID_FIRST + "    status: approved\n   notes: x\n", 4, "not valid YAML"),
    ("two documents", VALID_FIRST + "---\nbase_images: []\n", 3, "not valid YAML"),
    ("control character", VALID_FIRST + "  - name: docker.io/library/x\x07\n", 3, "not valid YAML"),
    ("a list at the top", "- name: docker.io/library/python\n", 1, "must be a mapping"),
    ("no base_images", "images:\n  - name: docker.io/library/python\n", 1, "unknown key 'images'"),
    ("base_images not a list", "base_images:\n  name: docker.io/library/python\n", 2, "must be a list"),
    ("an entry not a mapping", VALID_FIRST + "  - docker.io/library/python\n", 3, "must be a mapping"),
    ("no name", VALID_FIRST + "  - tags: ['1']\n", 3, "this entry has no name"),
    ("short name", VALID_FIRST + "  - name: python\n", 3, "'docker.io/library/python'"),
    ("name with a tag", VALID_FIRST + "  - name: docker.io/library/python:3.12\n", 3, "has a tag or digest"),
    ("uppercase name", VALID_FIRST + "  - name: docker.io/Library/python\n", 3, "must be lowercase"),
    ("name as a number", VALID_FIRST + "  - name: 12\n", 3, "name must be text, not the int 12"),
    ("empty name", VALID_FIRST + "  - name:\n", 3, "name must be text, but it is empty"),
    ("name twice", VALID_FIRST + "  - name: docker.io/library/alpine\n", 3, "already listed at line 2"),
    ("a key twice", VALID_FIRST + "    status: approved\n    status: banned\n", 4, "'status' appears twice"),
    ("tags not a list", VALID_FIRST + "    tags: 3.12-*\n", 3, "tags must be a list"),
    (
        "a tag read as a number",
        VALID_FIRST + "    tags: [3.10]\n",
        3,
        "a tag pattern must be text, not the float 3.1: put it in quotes",
    ),
    ("an unclosed glob", VALID_FIRST + "    tags:\n      - '3.1[2-*'\n", 4, "tag pattern '3.1[2-*'"),
    ("a tag twice", VALID_FIRST + "    tags:\n      - a\n      - a\n", 5, "already listed at line 4"),
    ("a bad digest", VALID_FIRST + "    digests: ['sha256:abc']\n", 3, "is not a digest"),
    ("a bad status", VALID_FIRST + "    status: allowed\n", 3, "use one of approved, deprecated, banned"),
    ("age as text", VALID_FIRST + "    max_age_days: '180'\n", 3, "whole number of days"),
    ("age as a boolean", VALID_FIRST + "    max_age_days: yes\n", 3, "whole number of days"),
    ("age zero", VALID_FIRST + "    max_age_days: 0\n", 3, "between 1 and 36500"),
    ("short replacement", VALID_FIRST + "    replacement: python:3.13\n", 3, "docker.io/library/python:3.13"),
    (
        "bad replacement",
        VALID_FIRST + "    replacement: 'not a reference'\n",
        3,
        "'not a reference' is not a valid image reference",
    ),
    ("unknown owner", VALID_FIRST + "    owner: nobody-group\n", 3, "no directory group has"),
    ("mirrors not a list", VALID_FIRST + "    mirrors: cache-eu\n", 3, "mirrors must be a list"),
    (
        "unknown registry",
        VALID_FIRST + "    mirrors:\n      - {registry: nope, repository: a}\n",
        4,
        "'nope'",
    ),
    (
        "a mirror with no repository",
        VALID_FIRST + "    mirrors:\n      - registry: cache-eu\n",
        4,
        "no repository",
    ),
    (
        "an unknown mirror key",
        VALID_FIRST + "    mirrors:\n      - registry: cache-eu\n        repository: a\n        zone: x\n",
        6,
        "unknown key 'zone' in a mirror",
    ),
    (
        "a bad mirror repository",
        VALID_FIRST + "    mirrors:\n      - {registry: cache-eu, repository: Base/Python}\n",
        4,
        "is not a repository path",
    ),
    (
        "two mirrors in one registry",
        VALID_FIRST + "    mirrors:\n      - {registry: cache-eu, repository: a}\n"
        "      - {registry: cache-eu, repository: b}\n",
        5,
        "keep one per registry",
    ),
    (
        "one mirror for two entries",
        VALID_FIRST + "    mirrors: [{registry: cache-eu, repository: a}]\n"
        "  - name: docker.io/library/b\n    mirrors:\n      - {registry: cache-eu, repository: a}\n",
        6,
        "already mirrors docker.io/library/alpine (line 2)",
    ),
    ("an extra date", VALID_FIRST + "    reviewed: 2024-05-01\n", 3, "reviewed: a date cannot be kept"),
    ("an extra NaN", VALID_FIRST + "    score: .nan\n", 3, "not a number JSON can hold"),
    ("a non-text key", VALID_FIRST + "    1: one\n", 3, "keys in an entry must be text"),
]


@pytest.mark.parametrize(("text", "line", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_an_invalid_file_is_refused_with_its_line(
    places: dict[str, Any], text: str, line: int, message: str
) -> None:
    with pytest.raises(CatalogFileError) as refused:
        catalog_io.import_catalog(text, actor=None)

    assert refused.value.line == line, str(refused.value)
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"line {line}: ")
    assert not BaseImage.objects.exists()  # the valid entries before the error were not written either


def test_an_owner_in_two_directories_is_ambiguous(places: dict[str, Any]) -> None:
    factories.group(directory="contractors", external_id=places["team"].external_id)
    text = VALID_FIRST + f"    owner: {places['team'].external_id}\n"

    with pytest.raises(CatalogFileError, match="line 3: owner: several directories"):
        catalog_io.import_catalog(text, actor=None)


def test_a_mirror_kept_by_an_entry_outside_the_file_cannot_be_taken(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    text = (
        "base_images:\n  - name: docker.io/library/b\n"
        "    mirrors: [{registry: cache-eu, repository: base/python}]\n"
    )

    with pytest.raises(
        CatalogFileError, match="line 3: cache-eu/base/python already mirrors docker.io/library/python"
    ):
        catalog_io.import_catalog(text, actor=None)
    # With --prune the old entry goes, so its mirror is free.
    catalog_io.import_catalog(text, actor=None, prune=True)
    assert BaseImageMirror.objects.get().base_image.name == "docker.io/library/b"


def test_an_invalid_file_changes_nothing_that_is_stored(places: dict[str, Any]) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    before, audited = catalog_io.export_catalog(), AuditEvent.objects.count()
    # The first entry is a valid change and the second a new entry; the third is wrong.
    text = (
        "base_images:\n  - name: docker.io/library/python\n    status: banned\n"
        "  - name: docker.io/library/golang\n  - name: golang\n"
    )

    with pytest.raises(CatalogFileError, match="line 5"):
        catalog_io.import_catalog(text, actor=None, prune=True)

    assert catalog_io.export_catalog() == before
    assert AuditEvent.objects.count() == audited


def test_a_failure_while_writing_rolls_back_every_entry(
    places: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file was valid, but the second write fails: the first must not stay behind."""
    real_record = audit.record
    calls: list[object] = []

    def record_then_fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(audit, "record", record_then_fail)
    with pytest.raises(RuntimeError):
        catalog_io.import_catalog(catalog_file(places), actor=None)

    assert len(calls) == 2
    assert not BaseImage.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="base_image.").exists()


# --- One entry at a time (pages and API use these) ------------------------------------------------


def spec(name: str = "docker.io/library/python", **fields: Any) -> EntrySpec:
    return EntrySpec(name=name, **fields)


def test_saving_an_entry_checks_it_and_names_the_field(admin: Any) -> None:
    for wrong, field in (
        (spec("python"), "name"),
        (spec(tags=("ok", "bad tag")), "tags"),
        (spec(tags=("a", "a")), "tags"),
        (spec(digests=("sha256:0",)), "digests"),
        (spec(status="allowed"), "status"),
        (spec(replacement="python"), "replacement"),
        (spec(max_age_days=0), "max_age_days"),
        (spec(extra={"status": "x"}), "extra"),
    ):
        with pytest.raises(RequestRejected) as refused:
            catalog_io.save_base_image(None, wrong, actor=admin)
        assert str(refused.value).startswith(f"{field}: "), str(refused.value)
    assert not BaseImage.objects.exists()


def test_a_name_already_in_the_catalog_is_refused(admin: Any) -> None:
    catalog_io.save_base_image(None, spec(), actor=admin)

    with pytest.raises(RequestRejected, match="name: docker.io/library/python is already in the catalog"):
        catalog_io.save_base_image(None, spec(), actor=admin)


def test_a_mirror_belongs_to_one_entry(admin: Any, places: dict[str, Any]) -> None:
    mirror = MirrorSpec(places["eu"], "base/python", "westeurope")
    catalog_io.save_base_image(None, spec(mirrors=(mirror,)), actor=admin)

    with pytest.raises(RequestRejected, match="already mirrors docker.io/library/python"):
        catalog_io.save_base_image(None, spec("docker.io/library/node", mirrors=(mirror,)), actor=admin)


def test_saving_an_entry_unchanged_records_nothing(admin: Any, places: dict[str, Any]) -> None:
    mirrors = (MirrorSpec(places["eu"], "base/python"), MirrorSpec(places["us"], "base/python"))
    entry = catalog_io.save_base_image(None, spec(tags=("3.12-*",), mirrors=mirrors), actor=admin)
    audited = AuditEvent.objects.count()

    # The same mirrors typed in another order are the same entry.
    catalog_io.save_base_image(entry, spec(tags=("3.12-*",), mirrors=mirrors[::-1]), actor=admin)

    assert AuditEvent.objects.count() == audited
    entry.refresh_from_db()
    assert entry.updated_by == admin


def test_tag_patterns_are_globs_over_tag_characters() -> None:
    for good in ("3.12-*", "*", "1.2?.[0-9]*", "v[!0]*", "latest", "_x"):
        assert catalog_io.check_tag_pattern(good) == good
    for bad in ("", "a b", "3.12[", "3]", "[]", "a/b", "-rc", ".x", "é", "x" * 129):
        with pytest.raises(catalog_io.InvalidValue):
            catalog_io.check_tag_pattern(bad)


def test_names_must_be_written_normalised() -> None:
    assert catalog_io.check_name("docker.io/library/python") == "docker.io/library/python"
    assert catalog_io.check_name("ghcr.io/acme/base") == "ghcr.io/acme/base"
    assert catalog_io.check_name("localhost:5000/base") == "localhost:5000/base"
    for written, normalised in (
        ("python", "docker.io/library/python"),
        ("library/python", "docker.io/library/python"),
        ("index.docker.io/library/python", "docker.io/library/python"),
        ("acme/base", "docker.io/acme/base"),
    ):
        with pytest.raises(catalog_io.InvalidValue, match=f"write the normalised repository '{normalised}'"):
            catalog_io.check_name(written)


def test_digests_follow_go_digest() -> None:
    for good in (DIGEST, "sha512:" + "c" * 128, "sha384:" + "d" * 96):
        assert catalog_io.check_digest(good) == good
    for bad in ("sha256:" + "A" * 64, "sha256:" + "a" * 63, "md5:" + "a" * 32, "a" * 64, ""):
        with pytest.raises(catalog_io.InvalidValue):
            catalog_io.check_digest(bad)


# --- The commands ---------------------------------------------------------------------------------


def test_import_command_prints_a_summary(places: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_file(places))
    out = io.StringIO()

    call_command("import_base_images", str(path), stdout=out)
    path.write_text("base_images:\n  - name: docker.io/library/node\n    status: banned\n")
    call_command("import_base_images", str(path), "--prune", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == f"{path}: 2 created, 0 updated, 0 unchanged, 0 deleted"
    assert f"{path}: 0 created, 1 updated, 0 unchanged, 1 deleted" in lines
    assert "  deleted: docker.io/library/python" in lines
    assert stored_names() == ["docker.io/library/node"]


def test_import_command_refuses_a_bad_file_in_one_line(places: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(VALID_FIRST + "  - name: python\n")

    with pytest.raises(CommandError) as refused:
        call_command("import_base_images", str(path))

    message = str(refused.value)
    assert message.startswith(f"{path}: line 3: write the normalised repository 'docker.io/library/python'")
    assert message.endswith("nothing was changed")
    assert "\n" not in message
    assert not BaseImage.objects.exists()


def test_import_command_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_base_images", str(tmp_path / "absent.yaml"))


def test_export_command_writes_stdout_or_a_file(places: dict[str, Any], tmp_path: Path) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    out, err = io.StringIO(), io.StringIO()

    call_command("export_base_images", stdout=out)
    call_command("export_base_images", "--output", str(tmp_path / "out.yaml"), stderr=err)

    assert out.getvalue() == catalog_io.export_catalog()
    assert (tmp_path / "out.yaml").read_text() == catalog_io.export_catalog()
    assert "2 entries written" in err.getvalue()


def test_import_reads_what_export_wrote(places: dict[str, Any], tmp_path: Path) -> None:
    catalog_io.import_catalog(catalog_file(places), actor=None)
    call_command("export_base_images", "--output", str(tmp_path / "catalog.yaml"), stderr=io.StringIO())
    BaseImage.objects.all().delete()
    DirectoryGroup.objects.filter(pk=places["team"].pk).update(display_name="Renamed team")  # ids, not names

    out = io.StringIO()
    call_command("import_base_images", str(tmp_path / "catalog.yaml"), stdout=out)

    assert "2 created" in out.getvalue()
    assert BaseImage.objects.get(name="docker.io/library/python").owner_group == places["team"]
    assert Registry.objects.filter(base_image_mirrors__isnull=False).distinct().count() == 2
