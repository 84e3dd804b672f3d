"""The frontmatter fields of SKILL.md that toolbag reads, as pydantic models, and their problems in plain words.

The Agent Skills reference validator judges ``name`` and ``description`` (present, length, characters) and
which top-level keys exist. These models check what toolbag adds: the name is plain ASCII, the description
has no angle brackets, ``license`` and ``allowed-tools`` are one line of text, and ``metadata:`` (a mapping
of text values) holds the ``toolbag.*`` fields below. When toolbag.yaml's names are given, the capability
must have a route and route hints must name its providers or models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import ErrorDetails

from toolbag.config import TIERS, Tier
from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.model import RouteHints
from toolbag.skills.plain_errors import is_unknown_key, own_words, rejected

DEFAULT_TIER: Tier = "standard"
DEFAULT_MAX_OUTPUT_TOKENS = 1024
MAX_OUTPUT_TOKENS_LIMIT = 1_000_000

#: The toolbag fields a skill may set under ``metadata:``, and what each one means.
TOOLBAG_FIELDS: dict[str, str] = {
    "toolbag.version": 'the skill\'s version, semantic versioning, e.g. "1.2.0" (required)',
    "toolbag.capability": "the kind of work, a route in toolbag.yaml, e.g. summarize (required)",
    "toolbag.tier": "default tier: interactive, standard or batch (optional, default standard)",
    "toolbag.route-hints": 'advice to the router, e.g. "prefer=anthropic min-context=32000" (optional)',
    "toolbag.max-output-tokens": 'the most tokens the answer may use, e.g. "2048" (optional, default 1024)',
}
ROUTE_HINTS = "toolbag.route-hints"
ROUTE_HINT_KEYS = ("prefer", "avoid", "min-context", "needs")
ModelFeature = Literal["json_schema", "tools", "batch"]
MODEL_FEATURES: tuple[str, ...] = get_args(ModelFeature)

SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
CAPABILITY_NAME = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
_ASCII_SKILL_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_REQUIRED_EXAMPLES = {"toolbag.version": '"1.0.0"', "toolbag.capability": "summarize"}

_ROUTE_HINTS_FIX = (
    'Write space-separated key=value pairs, e.g. "prefer=anthropic,openai avoid=local min-context=32000 '
    'needs=tools"; keys: ' + ", ".join(ROUTE_HINT_KEYS) + "."
)


@dataclass(frozen=True)
class HeaderContext:
    """What the header is checked against: the skill's folder name, and names from toolbag.yaml.

    ``None`` for ``capabilities`` or ``route_targets`` (providers and models) skips that check.
    """

    folder_name: str = ""
    capabilities: Collection[str] | None = None
    route_targets: Collection[str] | None = None


def _context(info: ValidationInfo) -> HeaderContext:
    return info.context if isinstance(info.context, HeaderContext) else HeaderContext()


# ---------------------------------------------------------------- the top-level fields


def _text_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _ascii_name(name: str | None, info: ValidationInfo) -> str | None:
    # A name the reference validator rejects (upper case, not the folder's name) is reported by it alone.
    same_as_folder = name == _context(info).folder_name
    if name and same_as_folder and name == name.lower() and not _ASCII_SKILL_NAME.fullmatch(name):
        raise rejected(
            f"the name {name!r} uses characters other than a-z, 0-9 and -",
            "toolbag uses the name as the answer's schema name, which vendors limit to ASCII.",
        )
    return name


def _no_angle_brackets(description: str | None) -> str | None:
    if description and ("<" in description or ">" in description):
        raise rejected(
            "the description contains < or >, which some skill clients reject",
            "Write it in words without angle brackets.",
        )
    return description


OneLine = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]


class SkillHeader(BaseModel):
    """The frontmatter fields toolbag reads; any other top-level key is the reference validator's to judge."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: Annotated[str | None, BeforeValidator(_text_or_none), AfterValidator(_ascii_name)] = None
    description: Annotated[str | None, BeforeValidator(_text_or_none), AfterValidator(_no_angle_brackets)] = None
    license: OneLine | None = None
    allowed_tools: Annotated[str, Field(strict=True)] = Field("", alias="allowed-tools")
    metadata: dict[str, str]

    @property
    def tools(self) -> tuple[str, ...]:
        """The tool names of ``allowed-tools``."""
        return tuple(self.allowed_tools.split())


# ---------------------------------------------------------------- the toolbag.* fields


class MissingValue:
    """Stands for a route hint written without ``=value``; every field rejects it."""

    def __repr__(self) -> str:
        return "MissingValue()"


def split_route_hints(text: object) -> object:
    """``"prefer=a,b min-context=8000"`` as ``{"prefer": "a,b", "min-context": "8000"}``.

    A token without ``=value`` becomes a key of its own holding :class:`MissingValue`, so it is reported.
    """
    if not isinstance(text, str):
        return text
    entries: dict[str, object] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        if value:
            entries[key] = value
        else:
            entries[token] = MissingValue()
    return entries


def _comma_list(value: object) -> object:
    return tuple(item for item in value.split(",") if item) if isinstance(value, str) else value


def _whole_number(value: object) -> object:
    """Digits only: ``"2048"`` is a number; ``"+5"``, ``"1_000"`` and ``"2.0"`` are not."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


def _known_target(name: str, info: ValidationInfo) -> str:
    known = _context(info).route_targets
    if known is not None and name not in known:
        raise rejected(
            f"route hint names {name!r}, which is neither a provider nor a model in toolbag.yaml"
            f"{did_you_mean(name, sorted(known))}",
            "Name a provider (e.g. anthropic) or a model (e.g. claude-haiku) from toolbag.yaml.",
        )
    return name


def _routed(capability: str, info: ValidationInfo) -> str:
    known = _context(info).capabilities
    if known is not None and capability not in known:
        options = sorted(known)
        raise rejected(
            f"capability {capability!r} has no route in toolbag.yaml{did_you_mean(capability, options)}",
            "Use one of: " + ", ".join(options) + "; or add a route for it under routes: in toolbag.yaml.",
        )
    return capability


WholeNumber = Annotated[int, Field(strict=True), BeforeValidator(_whole_number)]
RouteTargets = Annotated[tuple[Annotated[str, AfterValidator(_known_target)], ...], BeforeValidator(_comma_list)]


class RouteHintEntries(BaseModel):
    """``toolbag.route-hints`` split into its ``key=value`` entries (lists are comma-separated)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefer: RouteTargets = ()
    avoid: RouteTargets = ()
    min_context: Annotated[WholeNumber, Field(gt=0)] | None = Field(None, alias="min-context")
    needs: Annotated[tuple[ModelFeature, ...], BeforeValidator(_comma_list)] = ()

    def route_hints(self) -> RouteHints:
        """The hints as the router reads them."""
        return RouteHints(prefer=self.prefer, avoid=self.avoid, min_context_tokens=self.min_context, needs=self.needs)


class ToolbagFields(BaseModel):
    """The ``toolbag.*`` entries of ``metadata:`` (values are text in the format)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[str, StringConstraints(strip_whitespace=True, pattern=SEMVER)] = Field(alias="toolbag.version")
    capability: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, pattern=CAPABILITY_NAME), AfterValidator(_routed)
    ] = Field(alias="toolbag.capability")
    tier: Annotated[Tier, BeforeValidator(str.strip)] = Field(DEFAULT_TIER, alias="toolbag.tier")
    max_output_tokens: Annotated[WholeNumber, Field(ge=1, le=MAX_OUTPUT_TOKENS_LIMIT)] = Field(
        DEFAULT_MAX_OUTPUT_TOKENS, alias="toolbag.max-output-tokens"
    )
    route_hints: Annotated[RouteHintEntries, BeforeValidator(split_route_hints)] = Field(
        RouteHintEntries.model_validate({}), alias="toolbag.route-hints"
    )


def toolbag_entries(metadata: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``metadata:`` that belong to toolbag (``toolbag.*``)."""
    return {key: value for key, value in metadata.items() if key.startswith("toolbag.")}


# ---------------------------------------------------------------- problems in plain words

Where = Callable[[str], str]


def header_problems(file: str, errors: Sequence[ErrorDetails], where: Where) -> list[Problem]:
    """The errors of :class:`SkillHeader` as problems; ``where`` places a frontmatter key (``line N, key``)."""
    problems = []
    for error in errors:
        key = str(error["loc"][0])
        words = own_words(error)
        if words is not None:
            problems.append(Problem(file, where(key), words.message, words.fix))
        elif key == "license":
            problems.append(Problem(file, where(key), "license must be one line of text", "e.g. Apache-2.0"))
        elif key == "allowed-tools":
            problems.append(
                Problem(
                    file,
                    where(key),
                    "allowed-tools must be one line of tool names separated by spaces, not a list",
                    "e.g. `allowed-tools: web.search fs.read`",
                )
            )
        elif key == "metadata" and error["type"] == "missing":
            problems.append(
                Problem(
                    file,
                    "frontmatter",
                    "there is no metadata: section, so toolbag does not know the skill's version and capability",
                    'Add\nmetadata:\n  toolbag.version: "1.0.0"\n  toolbag.capability: summarize',
                )
            )
        elif key == "metadata":
            problems.append(
                Problem(
                    file,
                    where(key),
                    "metadata must be a list of `key: value` lines indented under `metadata:`",
                    'e.g.\nmetadata:\n  toolbag.version: "1.0.0"',
                )
            )
    return problems


def toolbag_problems(
    file: str, errors: Sequence[ErrorDetails], metadata: Mapping[str, str], top_keys: Collection[str], where: Where
) -> list[Problem]:
    """The errors of :class:`ToolbagFields` as problems, read against the ``metadata:`` they came from."""
    problems = []
    for error in errors:
        key = str(error["loc"][0])
        place = where(f"metadata.{key}")
        raw = metadata.get(key, "")
        words = own_words(error)
        if words is not None:
            problems.append(Problem(file, place, words.message, words.fix))
        elif is_unknown_key(error, depth=1):
            known = list(TOOLBAG_FIELDS)
            problems.append(
                Problem(
                    file,
                    place,
                    f"{key!r} is not a toolbag field{did_you_mean(key, known)}",
                    "The toolbag fields are: " + ", ".join(known) + ".",
                )
            )
        elif error["type"] == "missing":
            problems.append(_missing_field(file, key, metadata, top_keys, where("metadata")))
        elif key == "toolbag.version":
            problems.append(
                Problem(
                    file,
                    place,
                    f"toolbag.version {raw!r} is not a semantic version",
                    'Use three numbers separated by dots, e.g. "1.0.0"; raise the last one for a small fix.',
                )
            )
        elif key == "toolbag.capability" and error["type"] == "string_too_short":
            problems.append(
                Problem(
                    file,
                    place,
                    "toolbag.capability is empty",
                    "Name the kind of work, a route in toolbag.yaml, e.g. summarize, extract or classify.",
                )
            )
        elif key == "toolbag.capability":
            problems.append(
                Problem(
                    file,
                    place,
                    f"toolbag.capability {raw!r} is not a capability name",
                    "Use lowercase letters, digits and single hyphens, e.g. code-review.",
                )
            )
        elif key == "toolbag.tier":
            problems.append(
                Problem(
                    file,
                    place,
                    f"toolbag.tier {raw!r} is not a tier{did_you_mean(raw.strip(), TIERS)}",
                    "Use one of: " + ", ".join(TIERS) + ".",
                )
            )
        elif key == "toolbag.max-output-tokens":
            problems.append(
                Problem(
                    file,
                    place,
                    f"toolbag.max-output-tokens {raw!r} is not a whole number between 1 and "
                    f"{MAX_OUTPUT_TOKENS_LIMIT}",
                    'e.g. toolbag.max-output-tokens: "2048"',
                )
            )
        elif key == ROUTE_HINTS:
            problems.append(_route_hint_problem(file, place, error, split_route_hints(raw)))
    return problems


def _missing_field(
    file: str, field: str, metadata: Mapping[str, str], top_keys: Collection[str], place: str
) -> Problem:
    bare = field.removeprefix("toolbag.")
    if bare in metadata:
        fix = f"Rename `{bare}` to `{field}` under metadata:"
    elif bare in top_keys:
        fix = f"Move `{bare}:` under metadata: and call it `{field}` (value in quotes)."
    else:
        fix = f"Add `  {field}: {_REQUIRED_EXAMPLES[field]}` under metadata: ({TOOLBAG_FIELDS[field]})"
    return Problem(file, place, f"metadata has no {field}", fix)


def _route_hint_problem(file: str, place: str, error: ErrorDetails, entries: object) -> Problem:
    hint = str(error["loc"][1]) if len(error["loc"]) > 1 else ROUTE_HINTS
    if isinstance(error["input"], MissingValue):
        return Problem(file, place, f"route hint {hint!r} is not key=value", _ROUTE_HINTS_FIX)
    if is_unknown_key(error):
        message = f"{hint!r} is not a route hint{did_you_mean(hint, ROUTE_HINT_KEYS)}"
        return Problem(file, place, message, _ROUTE_HINTS_FIX)
    if hint == "needs":
        written = entries.get("needs", "") if isinstance(entries, dict) else ""
        return Problem(
            file,
            place,
            f"route hint needs={written}: {error['input']} is not a model feature",
            "Features are: " + ", ".join(MODEL_FEATURES) + ".",
        )
    message = f"route hint min-context={error['input']} is not a positive whole number"
    return Problem(file, place, message, _ROUTE_HINTS_FIX)
