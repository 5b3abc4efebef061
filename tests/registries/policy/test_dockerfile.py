"""FROM as BuildKit reads it: every form of the doc's test matrix (A3), the lexical rules, the errors
that make a text "not a Dockerfile", and the JSON the CLI and the API return.

The catalog is the real `Catalog`, built from in-memory entries; one test loads it from BaseImage rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from registries.models import BaseImage
from registries.policy.catalog import Catalog, Entry
from registries.policy.dockerfile import CheckResult, DockerfileError, StageResult, check

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


def entry(id: int, name: str, *tags: str, status: str = "approved", replacement: str = "") -> Entry:
    return Entry(
        id=id,
        name=name,
        tags=tags,
        digests=frozenset(),
        status=status,
        replacement=replacement,
        max_age_days=None,
    )


CATALOG = Catalog(
    [
        entry(1, "docker.io/library/alpine"),  # no tag patterns: any tag, and digest-only references
        entry(2, "docker.io/library/python", "3.12-*", "3.13-*"),
        entry(3, "docker.io/library/golang", "1.22*"),
        entry(4, "gcr.io/distroless/static"),
        entry(
            5,
            "docker.io/library/debian",
            "11",
            status="deprecated",
            replacement="docker.io/library/debian:12",
        ),
        entry(6, "docker.io/library/debian-legacy", status="banned"),
        entry(7, "docker.io/library/ubuntu", "24.04", "22.04"),
        entry(8, "docker.io/myorg/app", "1"),
        entry(9, "registry.corp:5000/base/ubi", "9"),
        entry(10, "good.io/a"),
    ]
)


def run(text: str, build_args: Mapping[str, str] | None = None) -> CheckResult:
    return check(text, build_args or {}, CATALOG)


def only(text: str, build_args: Mapping[str, str] | None = None) -> StageResult:
    (stage,) = run(text, build_args).stages
    return stage


def last(text: str, build_args: Mapping[str, str] | None = None) -> StageResult:
    return run(text, build_args).stages[-1]


def refused(text: str) -> str:
    with pytest.raises(DockerfileError) as raised:
        run(text)
    return str(raised.value)


# --- The test matrix of doc A3 ------------------------------------------------------------------


def test_1_an_untagged_image_gets_latest_and_a_warning() -> None:
    stage = only("FROM alpine\n")
    assert (stage.image, stage.reference, stage.verdict) == (
        "alpine",
        "docker.io/library/alpine:latest",
        "approved",
    )
    assert ":latest is implied" in stage.message


def test_2_latest_written_is_warned() -> None:
    stage = only("FROM alpine:latest\n")
    assert stage.reference == "docker.io/library/alpine:latest"
    assert "tag latest moves" in stage.message
    assert "implied" not in stage.message


def test_3_tag_and_digest_are_both_kept_and_latest_is_not_warned() -> None:
    stage = only(f"FROM alpine:latest@{DIGEST}\n")
    assert stage.reference == f"docker.io/library/alpine:latest@{DIGEST}"
    assert "pinned by digest; tag latest is kept as information" in stage.message
    assert "moves" not in stage.message


def test_4_a_digest_alone_gets_no_tag_and_says_drift_cannot_be_evaluated() -> None:
    stage = only(f"FROM alpine@{DIGEST}\n")
    assert (stage.reference, stage.verdict) == (f"docker.io/library/alpine@{DIGEST}", "approved")
    assert "drift against newer releases cannot be evaluated" in stage.message


def test_4_a_digest_alone_cannot_meet_tag_patterns() -> None:
    # An entry without tag patterns matches digest-only references (above); one with patterns cannot.
    stage = only(f"FROM python@{DIGEST}\n")
    assert stage.verdict == "unapproved"
    assert "no tag to check" in stage.message


def test_5_an_arg_default_names_the_image() -> None:
    stage = only("ARG BASE=python:3.12-slim\nFROM ${BASE}\n")
    assert (stage.image, stage.reference, stage.verdict) == (
        "python:3.12-slim",
        "docker.io/library/python:3.12-slim",
        "approved",
    )


def test_5_both_variable_spellings() -> None:
    assert only("ARG BASE=python:3.12-slim\nFROM $BASE\n").image == "python:3.12-slim"
    assert only("ARG V=3.12-slim\nFROM python:$V\n").image == "python:3.12-slim"
    assert only("ARG V=3.12\nFROM python:${V}-slim\n").image == "python:3.12-slim"


def test_6_a_build_arg_replaces_the_default() -> None:
    text = "ARG V=3.20\nFROM alpine:${V}\n"
    assert only(text).reference == "docker.io/library/alpine:3.20"
    assert only(text, {"V": "edge"}).reference == "docker.io/library/alpine:edge"


def test_6_a_build_arg_without_a_matching_arg_is_ignored() -> None:
    stage = only("FROM ${BASE}\n", {"BASE": "alpine:3.20"})
    assert (stage.image, stage.reference, stage.verdict) == ("", None, "invalid")
    assert "build arg BASE is ignored: no ARG BASE comes before the first FROM" in stage.message


def test_6_a_build_arg_is_used_verbatim() -> None:
    # BuildKit does not expand a build arg's value; "$TAG" stays literal and is no valid reference.
    stage = only("ARG TAG=3.20\nARG V=3.20\nFROM alpine:${V}\n", {"V": "$TAG"})
    assert (stage.image, stage.verdict) == ("alpine:$TAG", "invalid")


def test_6_a_build_arg_for_a_valueless_arg() -> None:
    assert (
        only("ARG BASE\nFROM ${BASE}\n", {"BASE": "alpine:3.20"}).reference == "docker.io/library/alpine:3.20"
    )


def test_7_a_default_when_unset_or_empty() -> None:
    text = "ARG BASE\nFROM ${BASE:-debian:11}\n"
    assert only(text).reference == "docker.io/library/debian:11"
    assert only(text, {"BASE": "ubuntu:24.04"}).reference == "docker.io/library/ubuntu:24.04"
    # ":-" treats an empty value as unset (BuildKit's lexer, from source)
    assert only(text, {"BASE": ""}).reference == "docker.io/library/debian:11"


def test_7_a_default_without_the_colon_only_when_unset() -> None:
    text = "ARG BASE\nFROM ${BASE-debian:11}\n"
    assert only(text).reference == "docker.io/library/debian:11"
    stage = only(text, {"BASE": ""})
    assert (stage.image, stage.verdict) == ("", "invalid")


def test_7_an_alternative_when_set() -> None:
    text = "ARG SLIM\nFROM python:3.12${SLIM:+-slim}\n"
    assert only(text).image == "python:3.12"
    assert only(text, {"SLIM": "1"}).image == "python:3.12-slim"
    assert only(text, {"SLIM": ""}).image == "python:3.12"
    assert only("ARG SLIM\nFROM python:3.12${SLIM+-slim}\n", {"SLIM": ""}).image == "python:3.12-slim"


def test_7_nested_defaults_and_quotes_inside_them() -> None:
    text = "ARG REGISTRY=gcr.io\nFROM ${IMAGE:-${REGISTRY}/distroless/static}\n"
    assert only(text).reference == "gcr.io/distroless/static:latest"
    assert only("FROM ${IMAGE:-'alpine:3.20'}\n").image == "alpine:3.20"


def test_7_a_required_variable_fails_with_its_message() -> None:
    stage = only("ARG BASE\nFROM ${BASE:?required}\n")
    assert stage.verdict == "invalid"
    assert "BASE: required" in stage.message
    assert "BASE: is not allowed to be empty" in only("ARG BASE=\nFROM ${BASE:?}\n").message
    assert (
        only("ARG BASE\nFROM ${BASE?}\n", {"BASE": "alpine"}).reference == "docker.io/library/alpine:latest"
    )


def test_8_an_undeclared_variable_is_empty_and_the_image_invalid() -> None:
    stage = only("FROM ${UNDECLARED}\n")
    assert stage.as_dict() == {
        "line": 1,
        "image": "",
        "reference": None,
        "stage": None,
        "from_stage": None,
        "verdict": "invalid",
        "message": "the image is empty after substitution; "
        "UNDECLARED is not declared by an ARG before the first FROM, so it is empty",
    }
    assert not run("FROM ${UNDECLARED}\n").compliant


def test_9_an_arg_inside_a_stage_does_not_reach_a_later_from() -> None:
    result = run("FROM alpine:3.20\nARG V=3.20\nFROM alpine:${V}\n")
    stage = result.stages[1]
    assert (stage.image, stage.reference, stage.verdict) == ("alpine:", None, "invalid")
    assert "ARG V is declared inside a stage, where FROM cannot see it" in stage.message
    assert not result.compliant


def test_10_platform_is_recorded_apart_from_the_reference() -> None:
    stage = only("FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n")
    assert (stage.image, stage.reference, stage.stage) == (
        "golang:1.22",
        "docker.io/library/golang:1.22",
        "build",
    )
    assert stage.platform == "$BUILDPLATFORM"
    assert "platform" not in stage.as_dict()


def test_11_stage_names_are_lowercased_and_referenced_stages_followed() -> None:
    result = run("FROM golang:1.22 AS Build\nRUN go build\nFROM build\n")
    builder, final = result.stages
    assert builder.stage == "build"
    assert (final.image, final.reference, final.from_stage, final.verdict) == (
        "build",
        None,
        "build",
        "stage",
    )
    assert final.message == "builds on stage build (line 1)"
    assert result.final_base == "docker.io/library/golang:1.22"


def test_11_a_stage_is_found_only_by_its_lowercase_name() -> None:
    # BuildKit looks the FROM text up as written among lowercased names: "Build" is an image, and invalid.
    stage = last("FROM golang:1.22 AS build\nFROM Build\n")
    assert (stage.from_stage, stage.verdict) == (None, "invalid")
    assert "it is not stage build: stage names match only in lowercase" in stage.message


def test_12_a_name_defined_only_later_is_an_image() -> None:
    result = run("FROM build AS x\nFROM golang:1.22 AS build\n")
    stage = result.stages[0]
    assert (stage.reference, stage.from_stage, stage.verdict) == (
        "docker.io/library/build:latest",
        None,
        "unapproved",
    )
    assert "a later stage (line 2) is named build, but FROM only sees earlier stages" in stage.message


def test_13_an_earlier_stage_wins_over_an_image_of_the_same_name() -> None:
    stage = last("FROM alpine:3.20 AS node\nFROM node\n")
    assert (stage.reference, stage.from_stage, stage.verdict) == (None, "node", "stage")


def test_14_an_image_whose_last_component_is_a_stage_name_is_an_image() -> None:
    result = run("FROM good.io/a AS builder\nFROM evil.io/builder\n")
    stage = result.stages[1]
    assert (stage.reference, stage.from_stage, stage.verdict) == (
        "evil.io/builder:latest",
        None,
        "unapproved",
    )
    assert result.final_base == "evil.io/builder:latest"
    assert not result.compliant


def test_15_a_final_scratch_has_no_base() -> None:
    result = run("FROM golang:1.22 AS build\nFROM scratch\nCOPY --from=build /app /app\n")
    final = result.stages[1]
    assert (final.image, final.reference, final.verdict, final.message) == (
        "scratch",
        None,
        "scratch",
        "scratch: no base image",
    )
    assert (result.final_base, result.compliant) == (None, True)


def test_16_builder_stages_are_judged_too() -> None:
    result = run("FROM golang AS build\nFROM gcr.io/distroless/static\nCOPY --from=build /a /a\n")
    builder, final = result.stages
    assert (builder.verdict, final.verdict) == ("unapproved", "approved")
    assert result.final_base == "gcr.io/distroless/static:latest"
    assert not result.compliant


def test_17_to_19_other_build_inputs_do_not_make_stages() -> None:
    # COPY --from=<image>, RUN --mount=...,from=<image> and "# syntax=" are build inputs, a separate
    # policy dimension: they neither add stages nor change how FROM resolves.
    result = run(
        "# syntax=docker.io/docker/dockerfile:1\n"
        "FROM alpine:3.20\n"
        "COPY --from=evil.io/tools:1 /bin/tool /bin/tool\n"
        "COPY --from=0 /etc/os-release /tmp/\n"
        "RUN --mount=type=cache,from=evil.io/x,target=/x true\n"
    )
    assert [(stage.line, stage.reference) for stage in result.stages] == [
        (2, "docker.io/library/alpine:3.20")
    ]
    assert result.compliant


def test_20_case_tabs_continuations_comments_crlf_and_bom_read_like_the_canonical_form() -> None:
    canonical = run("FROM alpine:3.20 AS base\nRUN true\nFROM base\n").as_dict()
    untidy = (
        "\ufefffrom\talpine:3.20 \\\r\n"
        "  # a comment between continued lines\r\n"
        "\r\n"
        "\tas\tbase\r\n"
        "run true\r\n"
        "From base\r\n"
    )
    result = run(untidy).as_dict()
    assert result["stages"][0] == canonical["stages"][0]  # type: ignore[index]
    assert result["final_base"] == canonical["final_base"] == "docker.io/library/alpine:3.20"
    assert [s["line"] for s in result["stages"]] == [1, 6]  # type: ignore[attr-defined]


def test_21_a_namespace_is_on_docker_hub() -> None:
    stage = only("FROM myorg/app:1\n")
    assert (stage.reference, stage.verdict) == ("docker.io/myorg/app:1", "approved")


def test_22_a_registry_with_a_port() -> None:
    stage = only("FROM registry.corp:5000/base/ubi:9\n")
    assert (stage.reference, stage.verdict) == ("registry.corp:5000/base/ubi:9", "approved")


def test_23_an_uppercase_repository_is_invalid() -> None:
    stage = only("FROM Ubuntu:22.04\n")
    assert (stage.image, stage.reference, stage.verdict) == ("Ubuntu:22.04", None, "invalid")
    assert "must be lowercase" in stage.message


# --- Verdicts and the result --------------------------------------------------------------------


def test_deprecated_warns_and_stays_compliant() -> None:
    result = run("FROM debian:11\n")
    assert result.stages[0].verdict == "deprecated"
    assert "use docker.io/library/debian:12 instead" in result.stages[0].message
    assert result.compliant


def test_banned_is_not_compliant() -> None:
    result = run("FROM debian-legacy:1\n")
    assert (result.stages[0].verdict, result.compliant) == ("banned", False)


def test_the_result_has_exactly_the_documented_shape() -> None:
    result = run("ARG BASE=python:3.12-slim\nFROM golang:1.22 AS build\nFROM ${BASE}\n").as_dict()
    assert result == {
        "compliant": True,
        "final_base": "docker.io/library/python:3.12-slim",
        "stages": [
            {
                "line": 2,
                "image": "golang:1.22",
                "reference": "docker.io/library/golang:1.22",
                "stage": "build",
                "from_stage": None,
                "verdict": "approved",
                "message": "docker.io/library/golang:1.22 is approved",
            },
            {
                "line": 3,
                "image": "python:3.12-slim",
                "reference": "docker.io/library/python:3.12-slim",
                "stage": None,
                "from_stage": None,
                "verdict": "approved",
                "message": "docker.io/library/python:3.12-slim is approved",
            },
        ],
    }


def test_final_base_follows_a_chain_of_stages() -> None:
    result = run("FROM python:3.12-slim AS a\nFROM a AS b\nFROM b AS c\nFROM c\n")
    assert [stage.from_stage for stage in result.stages] == [None, "a", "b", "c"]
    assert result.final_base == "docker.io/library/python:3.12-slim"


def test_final_base_through_a_stage_on_scratch_is_null() -> None:
    assert run("FROM scratch AS empty\nFROM empty\n").final_base is None


def test_final_base_of_an_invalid_last_stage_is_null() -> None:
    assert run("FROM alpine:3.20\nFROM ${NOPE}\n").final_base is None


def test_a_stage_named_like_itself_is_the_image_then_the_stage() -> None:
    result = run("FROM alpine AS alpine\nFROM alpine\n")
    assert (result.stages[0].verdict, result.stages[1].verdict) == ("approved", "stage")


def test_a_repeated_stage_name_refers_to_the_latest_earlier_one() -> None:
    result = run("FROM alpine:3.20 AS base\nFROM python:3.12-slim AS base\nFROM base\n")
    assert result.final_base == "docker.io/library/python:3.12-slim"


def test_a_stage_named_scratch_shadows_scratch() -> None:
    # BuildKit looks stage names up before treating the text as scratch (and only lints the name).
    stage = last("FROM alpine:3.20 AS scratch\nFROM scratch\n")
    assert (stage.verdict, stage.from_stage) == ("stage", "scratch")


def test_scratch_is_exact() -> None:
    stage = only("FROM SCRATCH\n")
    assert (stage.verdict, stage.reference) == ("invalid", None)


def test_scratch_may_come_from_an_arg() -> None:
    assert only("ARG BASE=scratch\nFROM $BASE\n").verdict == "scratch"


def test_the_judge_sees_the_reference_with_latest_added() -> None:
    stage = only("FROM golang\n")
    assert stage.verdict == "unapproved"
    assert "tag latest is not allowed" in stage.message


# --- Substitution details -------------------------------------------------------------------------


def test_an_arg_default_may_use_earlier_args() -> None:
    text = "ARG REGISTRY=registry.corp:5000\nARG IMAGE=$REGISTRY/base/ubi:9\nFROM ${IMAGE}\n"
    assert only(text).reference == "registry.corp:5000/base/ubi:9"
    assert only(text, {"REGISTRY": "evil.io"}).reference == "evil.io/base/ubi:9"


def test_quoted_defaults_and_several_args_on_one_line() -> None:
    text = "ARG NAME=\"python\" TAG='3.12-slim'\nFROM ${NAME}:${TAG}\n"
    assert only(text).reference == "docker.io/library/python:3.12-slim"


def test_quotes_and_escapes_in_from() -> None:
    assert only("FROM 'alpine:3.20'\n").image == "alpine:3.20"
    assert only('FROM "alpine:${V:-3.20}"\n').image == "alpine:3.20"
    assert only("FROM alpine\\:3.20\n").image == "alpine:3.20"


def test_automatic_platform_args_are_unknown_unless_given() -> None:
    text = "FROM alpine:${TARGETARCH}\n"
    stage = only(text)
    assert (stage.image, stage.verdict) == ("alpine:${TARGETARCH}", "invalid")
    assert "TARGETARCH is set by the builder" in stage.message
    assert "--build-arg TARGETARCH=<value>" in stage.message
    # a build arg replaces an automatic one even without an ARG line, as BuildKit allows
    assert only(text, {"TARGETARCH": "arm64"}).reference == "docker.io/library/alpine:arm64"


def test_an_arg_built_from_an_automatic_arg_is_unknown_too() -> None:
    stage = only("ARG BASE=alpine:${TARGETOS}\nFROM $BASE\n")
    assert stage.verdict == "invalid"
    assert "ARG BASE (line 1): TARGETOS is set by the builder" in stage.message


def test_substitutions_customs_does_not_evaluate_are_invalid_not_literal() -> None:
    for form in ("${V#x}", "${V%x}", "${V/x/y}"):
        stage = only(f"ARG V=alpine\nFROM {form}\n")
        assert (stage.image, stage.verdict) == (form, "invalid")
        assert "Customs does not evaluate" in stage.message


@pytest.mark.parametrize("form", ["${}", "${V", "${:-x}", "${V*x}", "'alpine", '"alpine'])
def test_broken_substitutions_are_invalid(form: str) -> None:
    stage = only(f"FROM {form}\n")
    assert (stage.verdict, stage.reference) == ("invalid", None)
    assert stage.message.startswith("cannot substitute")


def test_a_lone_dollar_is_literal() -> None:
    assert only("FROM alpine$\n").image == "alpine$"


def test_an_unknown_default_does_not_matter_when_a_build_arg_is_given() -> None:
    stage = only("ARG BASE=${X%y}\nFROM $BASE\n", {"BASE": "alpine:3.20"})
    assert stage.reference == "docker.io/library/alpine:3.20"


def test_undeclared_names_are_noted_even_when_the_result_is_valid() -> None:
    stage = only("FROM alpine:3.20${SUFFIX}\n")
    assert stage.reference == "docker.io/library/alpine:3.20"
    assert "SUFFIX is not declared by an ARG before the first FROM" in stage.message


# --- Lexical rules --------------------------------------------------------------------------------


def test_the_escape_directive_changes_continuation_and_escapes() -> None:
    text = "# escape=`\nFROM alpine:3.20 `\n  AS base\nFROM c:\\\\windows\\\\base\n"
    result = run(text)
    assert result.stages[0].stage == "base"
    # With ` as escape, backslashes are ordinary characters.
    assert result.stages[1].image == "c:\\\\windows\\\\base"


def test_directives_are_case_insensitive_and_allow_spaces() -> None:
    assert only("#  ESCAPE = `\nFROM alpine:3.20 `\n AS base\n").stage == "base"


def test_a_directive_after_a_comment_is_a_comment() -> None:
    # "`" is then no escape, so it is a stray argument.
    assert "not 2 arguments" in refused("# hello\n# escape=`\nFROM alpine:3.20 `\n")


def test_a_directive_after_a_blank_line_is_a_comment() -> None:
    assert "not 2 arguments" in refused("\n# escape=`\nFROM alpine `\n")


def test_an_unknown_directive_ends_the_directives() -> None:
    assert "not 2 arguments" in refused("# unknown=1\n# escape=`\nFROM alpine `\n")


def test_syntax_and_check_directives_are_directives() -> None:
    text = "# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM alpine:3.20 `\n AS base\n"
    assert only(text).stage == "base"


def test_an_escaped_escape_at_the_end_does_not_continue() -> None:
    # "\\" at the end is an escaped backslash, so the next line is its own instruction.
    assert "not 2 arguments" in refused("FROM alpine:3.20 \\\\\nRUN true\n")


def test_a_continuation_with_trailing_blanks() -> None:
    assert only("FROM alpine:3.20 \\  \t\n  AS base\n").stage == "base"


def test_an_inline_hash_is_not_a_comment() -> None:
    assert "not 4 arguments" in refused("FROM alpine:3.20 # the base\n")


def test_line_numbers_count_directives_comments_continuations_and_heredocs() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"  # 1
        "# a comment\n"  # 2
        "FROM alpine:3.20 \\\n"  # 3
        "  AS base\n"  # 4
        "RUN <<EOF\n"  # 5
        "echo hi\n"  # 6
        "EOF\n"  # 7
        "\n"  # 8
        "FROM base\n"  # 9
    )
    assert [stage.line for stage in run(text).stages] == [3, 9]


def test_a_from_inside_a_heredoc_is_not_an_instruction() -> None:
    text = (
        "FROM alpine:3.20\nRUN <<EOF\nFROM evil.io/x\nEOF\nCOPY <<-END /etc/motd\n\tFROM evil.io/y\n\tEND\n"
    )
    result = run(text)
    assert [stage.image for stage in result.stages] == ["alpine:3.20"]


def test_quoted_and_several_heredocs() -> None:
    text = 'FROM alpine:3.20\nRUN <<"A" cat - <<B\nFROM evil.io/a\nA\nFROM evil.io/b\nB\nFROM good.io/a\n'
    assert [stage.image for stage in run(text).stages] == ["alpine:3.20", "good.io/a"]


def test_onbuild_carries_a_heredoc() -> None:
    text = "FROM alpine:3.20\nONBUILD RUN <<EOF\nFROM evil.io/x\nEOF\n"
    assert [stage.image for stage in run(text).stages] == ["alpine:3.20"]


def test_a_json_form_opens_no_heredoc() -> None:
    text = 'FROM alpine:3.20\nRUN ["sh", "-c", "cat <<EOF"]\nFROM good.io/a\n'
    assert [stage.image for stage in run(text).stages] == ["alpine:3.20", "good.io/a"]


def test_heredocs_only_on_run_copy_and_add() -> None:
    text = "FROM alpine:3.20\nLABEL x=<<EOF\nFROM good.io/a\n"
    assert [stage.image for stage in run(text).stages] == ["alpine:3.20", "good.io/a"]


# --- Not a Dockerfile (exit status 2) -----------------------------------------------------------


def test_empty() -> None:
    assert refused("") == "the Dockerfile is empty"


@pytest.mark.parametrize("text", ["\n\n", "# only a comment\n", "  \t\n", "\ufeff"])
def test_no_instructions(text: str) -> None:
    assert refused(text) == "the Dockerfile has no instructions, only comments or blank lines"


def test_a_continuation_into_nothing() -> None:
    assert refused("FROM alpine\n\\\n\n") == "line 2: a line continues into nothing"


def test_no_from() -> None:
    assert refused("ARG A=1\n") == "no FROM instruction: a Dockerfile needs at least one build stage"


@pytest.mark.parametrize("instruction", ["RUN true", "LABEL a=b", "ENV A=1", "COPY a b"])
def test_only_arg_may_precede_the_first_from(instruction: str) -> None:
    word = instruction.split()[0]
    assert refused(f"ARG A=1\n{instruction}\nFROM alpine\n") == (
        f"line 2: {word} comes before the first FROM; only ARG may"
    )


def test_an_unknown_instruction() -> None:
    assert refused("FROM alpine\nFRM x\n") == "line 2: unknown instruction FRM"


@pytest.mark.parametrize(
    ("args", "count"),
    [("", 0), ("alpine base", 2), ("alpine AS", 2), ("alpine FOR base", 3), ("alpine AS base extra", 4)],
)
def test_from_with_a_wrong_number_of_arguments(args: str, count: int) -> None:
    assert refused(f"FROM {args}\n") == (
        f"line 1: FROM takes an image and optionally AS <name>, not {count} arguments"
    )


def test_from_with_only_a_platform_has_no_image() -> None:
    assert "not 0 arguments" in refused("FROM --platform=linux/amd64\n")


@pytest.mark.parametrize("name", ["1stage", "-stage", "st@ge", "_stage", "stage/x"])
def test_invalid_stage_names(name: str) -> None:
    assert refused(f"FROM alpine AS {name}\n").startswith(f"line 1: invalid stage name {name!r}")


def test_valid_stage_names() -> None:
    assert only("FROM alpine as My-Stage_1.x\n").stage == "my-stage_1.x"


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        ("--platfrom=linux/amd64", "unknown flag --platfrom on FROM"),
        ("--platform", "--platform needs a value: --platform=<os/arch>"),
        ("--platform=a --platform=b", "--platform is given twice"),
    ],
)
def test_from_flag_errors(flags: str, error: str) -> None:
    assert refused(f"FROM {flags} alpine\n") == f"line 1: {error}"


def test_an_arg_needs_a_name() -> None:
    assert refused("ARG\nFROM alpine\n") == "line 1: ARG needs a name"


def test_directive_errors() -> None:
    assert refused("# escape=x\nFROM alpine\n") == "line 1: invalid escape token 'x': use \\ or `"
    assert refused("# escape=`\n# escape=`\nFROM alpine\n") == (
        "line 2: only one escape parser directive can be used"
    )


def test_an_unterminated_heredoc() -> None:
    assert refused("FROM alpine\nRUN <<EOF\necho\n") == "line 2: heredoc <<EOF is never terminated"


# --- With the catalog from the database -----------------------------------------------------------


@pytest.mark.django_db
def test_judged_against_base_image_rows() -> None:
    BaseImage.objects.create(name="docker.io/library/python", tags=["3.12-*"])
    BaseImage.objects.create(name="docker.io/library/node", status=BaseImage.Status.BANNED)
    result = check(
        "ARG PY=3.12-slim\nFROM node:20 AS assets\nFROM python:${PY}\n", {"PY": "3.11-slim"}, Catalog.load()
    )
    assert [(stage.reference, stage.verdict) for stage in result.stages] == [
        ("docker.io/library/node:20", "banned"),
        ("docker.io/library/python:3.11-slim", "unapproved"),
    ]
    assert (result.compliant, result.final_base) == (False, "docker.io/library/python:3.11-slim")
