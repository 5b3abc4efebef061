"""The base images a Dockerfile builds on, read the way BuildKit reads FROM, judged against the catalog.

`check(text, build_args, catalog)` is the whole API; the CLI (`manage.py check_dockerfile`) and the
HTTP endpoint both call it. It follows BuildKit's Dockerfile frontend from source:

- lexing (`parser/parser.go`, `line_parsers.go`, `split_command.go`): a UTF-8 BOM and CRLF endings,
  parser directives (`escape`, `syntax`, `check`) only before anything else, comments dropped even
  between continued lines, continuation by the escape token, heredoc bodies of RUN, COPY and ADD
  skipped so their lines are never read as instructions;
- stages (`instructions/parse.go`, `dockerfile2llb/convert.go`): only ARGs may precede the first FROM
  and only those ARGs are visible to FROM; a build arg replaces an ARG's default and is ignored
  without a matching ARG; FROM is expanded by BuildKit's shell lexer; a FROM whose whole expanded
  text equals the (lowercased) name of an earlier stage builds on that stage; exactly `scratch` is
  the empty image; anything else is parsed as an image reference (`references.parse`).

Every stage that names an image is judged, builder stages included (they run code in the build).
Deprecated stays compliant; unapproved, banned and invalid do not. Where Customs cannot know what
BuildKit would do (an automatic platform ARG such as TARGETARCH, a `${V%…}` substitution) the stage
is invalid with the reason, never guessed. Input that is not a Dockerfile raises DockerfileError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from registries.policy.catalog import Judgement, Verdict
from registries.policy.references import InvalidReference, Reference, parse, with_default_tag

STAGE = "stage"
SCRATCH = "scratch"
INVALID = "invalid"
NON_COMPLIANT = frozenset({Verdict.UNAPPROVED.value, Verdict.BANNED.value, INVALID})

INSTRUCTIONS = frozenset(
    {
        "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
        "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
    }
)  # fmt: skip
# Set by the builder in the global scope without any ARG; a build arg of the same name replaces them.
AUTOMATIC_ARGS = (
    "BUILDPLATFORM", "BUILDOS", "BUILDOSVERSION", "BUILDARCH", "BUILDVARIANT",
    "TARGETPLATFORM", "TARGETOS", "TARGETOSVERSION", "TARGETARCH", "TARGETVARIANT", "TARGETSTAGE",
)  # fmt: skip

_BOM = "\ufeff"
_DIRECTIVES = frozenset({"escape", "syntax", "check"})
# Go's \s is [\t\n\f\r ]; spelled out so Python's wider \s does not accept more.
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)")
_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})
_SUPPORTED = "$V, ${V}, ${V-x}, ${V:-x}, ${V+x}, ${V:+x}, ${V?x}, ${V:?x}"


class DockerfileError(ValueError):
    """The text cannot be read as a Dockerfile (exit status 2); the message is one readable line."""


class CatalogLike(Protocol):
    def judge(self, reference: Reference) -> Judgement: ...


@dataclass(frozen=True)
class StageResult:
    line: int
    image: str
    reference: str | None
    stage: str | None
    from_stage: str | None
    verdict: str
    message: str
    platform: str | None = None  # --platform as written; picks a manifest, is not judged, not in the JSON

    def as_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "image": self.image,
            "reference": self.reference,
            "stage": self.stage,
            "from_stage": self.from_stage,
            "verdict": self.verdict,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckResult:
    compliant: bool
    final_base: str | None
    stages: tuple[StageResult, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "compliant": self.compliant,
            "final_base": self.final_base,
            "stages": [stage.as_dict() for stage in self.stages],
        }


def check(text: str, build_args: Mapping[str, str], catalog: CatalogLike) -> CheckResult:
    """Judge every FROM of `text` built with `build_args`; DockerfileError if it is not a Dockerfile."""
    dockerfile = read_dockerfile(text)
    resolver = _Resolver(dockerfile, build_args, catalog)
    results = tuple(resolver.resolve(index) for index in range(len(dockerfile.stages)))
    return CheckResult(
        compliant=all(result.verdict not in NON_COMPLIANT for result in results),
        final_base=resolver.bases[-1],
        stages=results,
    )


# --- Reading: lines, directives, continuations and heredocs into instructions --------------------


@dataclass(frozen=True)
class Instruction:
    word: str  # the instruction as written, for messages
    flags: tuple[str, ...]
    args: str
    line: int

    @property
    def keyword(self) -> str:
        return self.word.lower()


@dataclass(frozen=True)
class Arg:
    name: str
    default: str | None
    line: int


@dataclass(frozen=True)
class From:
    base: str  # before substitution
    name: str | None  # lowercased, as BuildKit keeps it
    platform: str | None
    line: int


@dataclass(frozen=True)
class Dockerfile:
    escape: str
    global_args: tuple[Arg, ...]
    stages: tuple[From, ...]
    stage_args: frozenset[str]  # ARGs declared inside stages: invisible to FROM, named in messages


def read_dockerfile(text: str) -> Dockerfile:
    """Instructions into global ARGs and stages, refusing what BuildKit refuses before building."""
    instructions, escape = _Lexer(text).instructions()
    global_args: list[Arg] = []
    stages: list[From] = []
    stage_args: set[str] = set()
    for instruction in instructions:
        if instruction.keyword not in INSTRUCTIONS:
            raise DockerfileError(f"line {instruction.line}: unknown instruction {instruction.word}")
        if instruction.keyword == "from":
            stages.append(_from(instruction))
        elif instruction.keyword == "arg":
            args = _args(instruction, escape)
            if stages:
                stage_args.update(arg.name for arg in args)
            else:
                global_args.extend(args)
        elif not stages:
            raise DockerfileError(
                f"line {instruction.line}: {instruction.word} comes before the first FROM; only ARG may"
            )
    if not stages:
        raise DockerfileError("no FROM instruction: a Dockerfile needs at least one build stage")
    return Dockerfile(escape, tuple(global_args), tuple(stages), frozenset(stage_args))


class _Lexer:
    """BuildKit's parser.Parse: physical lines to logical instructions."""

    def __init__(self, text: str) -> None:
        if text == "":
            raise DockerfileError("the Dockerfile is empty")
        # Only "\n" ends a line; a trailing "\r" is trimmed per line, so CRLF reads like LF.
        self.lines = text.split("\n")
        if self.lines[-1] == "":
            self.lines.pop()
        self.index = 0
        self.escape = "\\"
        self.continuation = _continuation_pattern(self.escape)
        self.directives_done = False
        self.directives_seen: set[str] = set()

    def instructions(self) -> tuple[list[Instruction], str]:
        found: list[Instruction] = []
        while self.index < len(self.lines):
            if instruction := self._next_instruction():
                found.append(instruction)
        if not found:
            raise DockerfileError("the Dockerfile has no instructions, only comments or blank lines")
        return found, self.escape

    def _next_instruction(self) -> Instruction | None:
        raw = self.lines[self.index]
        if self.index == 0:
            raw = raw.removeprefix(_BOM)
        token = raw.rstrip("\r\n").lstrip()
        self._directive(token)
        self.index += 1
        start = self.index
        logical, ended = self._trim_continuation("" if token.startswith("#") else token)
        if ended and logical == "":
            return None
        while not ended and self.index < len(self.lines):
            token = self.lines[self.index].rstrip("\r\n")
            self._directive(token)
            self.index += 1
            # Comments and blank lines between continued lines are dropped, not joined.
            if token.lstrip().startswith("#") or token.lstrip() == "":
                continue
            part, ended = self._trim_continuation(token)
            logical += part
        if logical.strip() == "":
            raise DockerfileError(f"line {start}: a line continues into nothing")
        instruction = _split_command(logical, start)
        self._skip_heredocs(instruction, logical)
        return instruction

    def _directive(self, token: str) -> None:
        """Parser directives count only before any instruction, comment or blank line."""
        if self.directives_done:
            return
        match = _DIRECTIVE.fullmatch(token)
        name = match.group(1).lower() if match else ""
        if match is None or name not in _DIRECTIVES:
            self.directives_done = True  # an unknown directive is a comment, and ends the directives
            return
        line = self.index + 1
        if name in self.directives_seen:
            raise DockerfileError(f"line {line}: only one {name} parser directive can be used")
        self.directives_seen.add(name)
        if name == "escape":
            if match.group(2) not in ("\\", "`"):
                raise DockerfileError(f"line {line}: invalid escape token {match.group(2)!r}: use \\ or `")
            self.escape = match.group(2)
            self.continuation = _continuation_pattern(self.escape)

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without its continuation token, and whether the instruction ends here."""
        if self.continuation.search(line):
            return self.continuation.sub(r"\1", line, count=1), False
        return line, True

    def _skip_heredocs(self, instruction: Instruction, logical: str) -> None:
        """Step over heredoc bodies: a FROM inside a RUN script is text, not an instruction."""
        for name, chomp in _heredocs(instruction, logical):
            while self.index < len(self.lines):
                candidate = self.lines[self.index].rstrip("\r\n")
                self.index += 1
                if (candidate.lstrip("\t") if chomp else candidate) == name:
                    break
            else:
                raise DockerfileError(f"line {instruction.line}: heredoc <<{name} is never terminated")


def _continuation_pattern(escape: str) -> re.Pattern[str]:
    # An escape token ending the line continues it, unless the token is itself escaped.
    token = re.escape(escape)
    return re.compile(rf"([^{token}]){token}[ \t]*\Z|\A{token}[ \t]*\Z")


def _split_command(logical: str, line: int) -> Instruction:
    word, *rest = _WHITESPACE.split(logical.strip(), maxsplit=1)
    args, flags = _builder_flags(rest[0]) if rest else ("", [])
    return Instruction(word=word, flags=tuple(flags), args=args.strip(), line=line)


def _builder_flags(line: str) -> tuple[str, list[str]]:
    """Leading `--name[=value]` words (quotes and backslashes honoured) and the rest of the line."""
    flags: list[str] = []
    position = 0
    while True:
        while position < len(line) and line[position].isspace():
            position += 1
        if not line.startswith("--", position):
            return line[position:], flags
        word, position = _flag_word(line, position)
        if word == "--":
            return line[position:], flags
        if word:
            flags.append(word)


def _flag_word(line: str, position: int) -> tuple[str, int]:
    chars: list[str] = []
    quote = ""
    while position < len(line):
        ch = line[position]
        position += 1
        if not quote and ch.isspace():
            break
        if ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        elif ch == "\\":
            if position < len(line):
                chars.append(line[position])
                position += 1
        else:
            chars.append(ch)
    return "".join(chars), position


def _heredocs(instruction: Instruction, logical: str) -> list[tuple[str, bool]]:
    """(terminator, strip leading tabs) for each heredoc the instruction opens."""
    keyword, args = instruction.keyword, instruction.args
    if keyword == "onbuild":  # ONBUILD RUN <<EOF carries its heredoc too
        inner = _split_command(args, instruction.line)
        keyword, args = inner.keyword, inner.args
    if keyword not in _HEREDOC_INSTRUCTIONS or _is_json_array(args):
        return []
    found = []
    for word in _raw_shell_words(logical):
        match = _HEREDOC.fullmatch(word)
        name = _unquoted_single_word(match.group(3)) if match and match.group(3) else None
        if match and name:
            found.append((name, match.group(2) == "-"))
    return found


def _is_json_array(args: str) -> bool:
    if not args.lstrip().startswith("["):
        return False
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _raw_shell_words(line: str) -> list[str]:
    """Shell words with quotes and escapes kept; an unterminated quote yields none, as in BuildKit."""
    words: list[str] = []
    current: list[str] = []
    position = 0
    while position < len(line):
        ch = line[position]
        if ch in "'\"":
            end = _closing_quote(line, position)
            if end < 0:
                return []
            current.append(line[position : end + 1])
            position = end + 1
        elif ch == "\\" and position + 1 < len(line):
            current.append(line[position : position + 2])
            position += 2
        elif ch.isspace():
            if current:
                words.append("".join(current))
            current = []
            position += 1
        else:
            current.append(ch)
            position += 1
    if current:
        words.append("".join(current))
    return words


def _closing_quote(line: str, start: int) -> int:
    quote, position = line[start], start + 1
    while position < len(line):
        if quote == '"' and line[position] == "\\":
            position += 2
            continue
        if line[position] == quote:
            return position
        position += 1
    return -1


def _unquoted_single_word(text: str) -> str | None:
    """A heredoc terminator with its quoting removed; None unless `text` is exactly one word."""
    words = _raw_shell_words(text)
    if len(words) != 1:
        return None
    try:
        return _Word(words[0], {}, "\\", keep_variables=True).expand()
    except _ExpansionError:
        return None


def _from(instruction: Instruction) -> From:
    """FROM [--platform=<p>] <image> [AS <name>], as instructions.parseFrom checks it."""
    words = _WHITESPACE.split(instruction.args) if instruction.args else []
    line = instruction.line
    name = None
    if len(words) == 3 and words[1].casefold() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise DockerfileError(
                f"line {line}: invalid stage name {words[2]!r}: it must start with a letter and hold only "
                "letters, digits, '-', '_' and '.'"
            )
    elif len(words) != 1:
        raise DockerfileError(
            f"line {line}: FROM takes an image and optionally AS <name>, not {len(words)} arguments"
        )
    return From(base=words[0], name=name, platform=_platform(instruction), line=line)


def _platform(instruction: Instruction) -> str | None:
    platform: str | None = None
    for flag in instruction.flags:
        name, has_value, value = flag.removeprefix("--").partition("=")
        if name != "platform":
            raise DockerfileError(f"line {instruction.line}: unknown flag --{name} on FROM")
        if platform is not None:
            raise DockerfileError(f"line {instruction.line}: --platform is given twice")
        if not has_value:
            raise DockerfileError(f"line {instruction.line}: --platform needs a value: --platform=<os/arch>")
        platform = value
    return platform or None


def _args(instruction: Instruction, escape: str) -> list[Arg]:
    """ARG NAME[=default] ...; the default keeps its quotes until it is expanded."""
    if instruction.flags:
        raise DockerfileError(f"line {instruction.line}: ARG takes no flags ({instruction.flags[0]})")
    words = _arg_words(instruction.args, escape)
    if not words:
        raise DockerfileError(f"line {instruction.line}: ARG needs a name")
    args = []
    for word in words:
        name, has_default, default = word.partition("=")
        args.append(Arg(name=name, default=default if has_default else None, line=instruction.line))
    return args


def _arg_words(text: str, escape: str) -> list[str]:
    """parseWords: split on unquoted whitespace, keeping quotes and escapes for the expansion."""
    words: list[str] = []
    current = ""
    quote = ""
    position = 0
    while position < len(text):
        ch = text[position]
        position += 1
        if not quote and ch.isspace():
            if current:
                words.append(current)
            current = ""
            continue
        if ch == escape and quote != "'":
            if position < len(text):
                current += ch + text[position]
                position += 1
            continue  # an escape token at the very end is dropped
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        current += ch
    if current:
        words.append(current)
    return words


# --- Substitution: BuildKit's shell lexer, for one word ---------------------------------------------


class _ExpansionError(Exception):
    pass


@dataclass(frozen=True)
class _Unknown:
    """A value only the builder knows, or an ARG whose default could not be expanded."""

    reason: str


Env = Mapping[str, str | _Unknown]


@dataclass
class Expansion:
    value: str
    missing: set[str] = field(default_factory=set)  # names looked up but not set


class _Word:
    """shell.Lex.ProcessWord: quotes, escapes and the $ forms Customs evaluates."""

    def __init__(self, text: str, env: Env, escape: str, *, keep_variables: bool = False) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.keep_variables = keep_variables  # heredoc names keep "$X" as written (SkipUnsetEnv)
        self.position = 0
        self.missing: set[str] = set()

    def expand(self) -> str:
        return self._until("")

    def _peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.position += len(ch)
        return ch

    def _until(self, stop: str) -> str:
        out: list[str] = []
        while ch := self._peek():
            if stop and ch == stop:
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == "'":
                out.append(self._single_quoted())
            elif ch == '"':
                out.append(self._double_quoted())
            else:
                self._next()
                if ch == self.escape:
                    ch = self._next()  # the escaped character is literal; a final escape is dropped
                out.append(ch)
        if stop:
            raise _ExpansionError(f"syntax error: missing '{stop}'")
        return "".join(out)

    def _single_quoted(self) -> str:
        self._next()
        out: list[str] = []
        while (ch := self._next()) != "'":
            if not ch:
                raise _ExpansionError("unterminated single quote")
            out.append(ch)
        return "".join(out)

    def _double_quoted(self) -> str:
        self._next()
        out: list[str] = []
        while (ch := self._peek()) != '"':
            if not ch:
                raise _ExpansionError("unterminated double quote")
            if ch == "$":
                out.append(self._dollar())
                continue
            self._next()
            if ch == self.escape and self._peek() in ('"', "$", self.escape):
                ch = self._next()  # inside double quotes only ", $ and the escape token are escaped
            out.append(ch)
        self._next()
        return "".join(out)

    def _dollar(self) -> str:
        start = self.position
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, _ = self._lookup(name)
            return self.text[start : self.position] if self.keep_variables else value
        self._next()
        if self._peek() == "":
            raise _ExpansionError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise _ExpansionError(f"bad substitution in {self.text!r}")
        name = self._name()
        modifier = self._next()
        if modifier == "}":
            value, _ = self._lookup(name)
            return self.text[start : self.position] if self.keep_variables else value
        null_is_unset = modifier == ":"
        if null_is_unset:
            modifier = self._next()
        if modifier not in ("-", "+", "?"):
            raise _ExpansionError(self._unsupported(name, modifier))
        word = self._until("}")
        if self.keep_variables:
            return self.text[start : self.position]
        return self._modify(name, modifier, word, null_is_unset)

    def _modify(self, name: str, modifier: str, word: str, null_is_unset: bool) -> str:
        value, is_set = self._lookup(name)
        empty = not is_set or (null_is_unset and value == "")
        if modifier == "-":
            return word if empty else value
        if modifier == "+":
            return "" if empty else word
        if not is_set:  # "?": the word is the error message
            raise _ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
        if empty:
            raise _ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
        return value

    def _unsupported(self, name: str, modifier: str) -> str:
        if modifier == "":
            return "syntax error: missing '}'"
        if modifier in ("#", "%", "/"):
            return f"${{{name}{modifier}...}} is a substitution Customs does not evaluate ({_SUPPORTED} are)"
        return f"unsupported modifier {modifier!r} in ${{{name}...}}"

    def _name(self) -> str:
        """A variable name: letters, digits and _, or a run of digits, or one special parameter."""
        ch = self._peek()
        if ch.isdecimal():
            start = self.position
            while self._peek().isdecimal():
                self._next()
            return self.text[start : self.position]
        if ch and ch in "@*#?-$!":
            return self._next()
        start = self.position
        while (ch := self._peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self._next()
        return self.text[start : self.position]

    def _lookup(self, name: str) -> tuple[str, bool]:
        if name not in self.env:
            self.missing.add(name)
            return "", False
        value = self.env[name]
        if isinstance(value, _Unknown):
            raise _ExpansionError(value.reason)
        return value, True


def expand(text: str, env: Env, escape: str = "\\") -> Expansion:
    """Substitute `text` as BuildKit does for FROM; _ExpansionError says why it cannot be."""
    word = _Word(text, env, escape)
    return Expansion(word.expand(), word.missing)


def _global_env(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> dict[str, str | _Unknown]:
    """What FROM can see: automatic platform ARGs, then the ARGs before the first FROM, in order."""
    env: dict[str, str | _Unknown] = {
        name: build_args[name] if name in build_args else _Unknown(_builder_only(name))
        for name in AUTOMATIC_ARGS
    }
    for arg in dockerfile.global_args:
        if arg.name in build_args:
            env[arg.name] = build_args[arg.name]  # used verbatim: a build arg is not expanded
        elif arg.default is not None:
            try:
                env[arg.name] = expand(arg.default, env, dockerfile.escape).value
            except _ExpansionError as exc:
                env[arg.name] = _Unknown(f"ARG {arg.name} (line {arg.line}): {exc}")
    return env


def _builder_only(name: str) -> str:
    return (
        f"{name} is set by the builder (its machine or --platform), so Customs cannot know it; "
        f"pass --build-arg {name}=<value> to check this FROM"
    )


# --- Resolving and judging each stage -----------------------------------------------------------


class _Resolver:
    def __init__(self, dockerfile: Dockerfile, build_args: Mapping[str, str], catalog: CatalogLike) -> None:
        self.dockerfile, self.build_args, self.catalog = dockerfile, build_args, catalog
        self.env = _global_env(dockerfile, build_args)
        self.declared = {arg.name for arg in dockerfile.global_args}
        self.names: dict[str, int] = {}  # stage name -> index of the latest stage so named so far
        self.bases: list[str | None] = []  # per stage: the image it descends from, None for scratch

    def resolve(self, index: int) -> StageResult:
        stage = self.dockerfile.stages[index]
        result, base = self._result(index, stage)
        self.bases.append(base)
        if stage.name:
            # Registered after resolving: "FROM x AS x" is the image x, not a loop.
            self.names[stage.name] = index
        return result

    def _result(self, index: int, stage: From) -> tuple[StageResult, str | None]:
        try:
            expansion = expand(stage.base, self.env, self.dockerfile.escape)
        except _ExpansionError as exc:
            return self._invalid(stage, stage.base, f"cannot substitute {stage.base}: {exc}"), None
        image, notes = expansion.value, self._notes_on_missing(expansion.missing)
        if image == "":
            return self._invalid(stage, image, _join("the image is empty after substitution", *notes)), None
        if image in self.names:
            origin = self.names[image]
            message = _join(f"builds on stage {image} (line {self.dockerfile.stages[origin].line})", *notes)
            return self._result_for(stage, image, STAGE, message, from_stage=image), self.bases[origin]
        if image == SCRATCH:
            return self._result_for(stage, image, SCRATCH, _join("scratch: no base image", *notes)), None
        return self._judged(index, stage, image, notes)

    def _judged(
        self, index: int, stage: From, image: str, notes: list[str]
    ) -> tuple[StageResult, str | None]:
        try:
            written = parse(image)
        except InvalidReference as exc:
            return self._invalid(stage, image, _join(str(exc), *self._stage_case_hint(image), *notes)), None
        reference = with_default_tag(written)
        judgement = self.catalog.judge(reference)
        message = _join(judgement.message, *_pinning(written), *self._later_stage_hint(index, image), *notes)
        result = self._result_for(stage, image, judgement.verdict.value, message, reference=str(reference))
        return result, str(reference)

    def _result_for(
        self,
        stage: From,
        image: str,
        verdict: str,
        message: str,
        *,
        reference: str | None = None,
        from_stage: str | None = None,
    ) -> StageResult:
        return StageResult(
            line=stage.line,
            image=image,
            reference=reference,
            stage=stage.name,
            from_stage=from_stage,
            verdict=verdict,
            message=message,
            platform=stage.platform,
        )

    def _invalid(self, stage: From, image: str, message: str) -> StageResult:
        return self._result_for(stage, image, INVALID, message)

    def _notes_on_missing(self, missing: set[str]) -> list[str]:
        """Why a variable expanded to nothing: BuildKit only warns, but the reader needs to know."""
        notes = []
        for name in sorted(missing):
            if name in self.declared:
                notes.append(f"ARG {name} has no default and no build arg, so it is empty")
            elif name in self.dockerfile.stage_args:
                notes.append(f"ARG {name} is declared inside a stage, where FROM cannot see it")
            elif name in self.build_args:
                notes.append(f"build arg {name} is ignored: no ARG {name} comes before the first FROM")
            else:
                notes.append(f"{name} is not declared by an ARG before the first FROM, so it is empty")
        return notes

    def _stage_case_hint(self, image: str) -> list[str]:
        # BuildKit looks the text up as written among lowercased stage names, so "FROM Build" after
        # "AS build" is an (invalid) image, not that stage. Say so rather than silently agreeing.
        if image.lower() in self.names:
            return [f"it is not stage {image.lower()}: stage names match only in lowercase"]
        return []

    def _later_stage_hint(self, index: int, image: str) -> list[str]:
        # Builders differ on names defined only later; BuildKit pulls the image, so that is judged.
        later = [s for s in self.dockerfile.stages[index + 1 :] if s.name == image]
        if later:
            return [
                f"a later stage (line {later[0].line}) is named {image}, but FROM only sees earlier stages"
            ]
        return []


def _pinning(written: Reference) -> list[str]:
    """hadolint's DL3006/DL3007 as notes, and what a digest pin means for drift."""
    if written.digest is None and written.tag is None:
        return ["no tag or digest is written, so :latest is implied; pin a version tag or a digest"]
    if written.digest is None and written.tag == "latest":
        return ["tag latest moves; pin a version tag or a digest"]
    if written.digest is not None and written.tag is None:
        return ["pinned by digest; with no tag written, drift against newer releases cannot be evaluated"]
    if written.digest is not None:
        return [f"pinned by digest; tag {written.tag} is kept as information"]
    return []


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)
