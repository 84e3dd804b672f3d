"""``toolbag check``: the agent configuration, checked the way the fleet will read it.

Four sources, the same files the fleet loads: ``toolbag.yaml`` (``$TOOLBAG_CONFIG``), the skills folder
(``$TOOLBAG_SKILLS_DIR``), ``tools.yaml`` (``$TOOLBAG_TOOLS``) and ``policy.yaml`` (``$TOOLBAG_POLICY``).

- the config validates, and every reference in it resolves (a model's provider, a route's candidates, tiers);
- every route candidate can run the skills of its capability: structured output, tools when the skill
  allows tools, and a context window of at least the skill's ``min-context`` (decided by
  :meth:`toolbag.routing.Router.meets`, the router's own test);
- every skill passes both validators (the Agent Skills reference validator and toolbag's checks), and the
  tools it allows exist;
- the tools load (MCP servers answer), and the policy parses; a grant naming a tool nobody provides, or a
  model pattern matching no model, is a warning.

Every problem is a :class:`~toolbag.skills.errors.Problem`: the file, the place (with its line where one is
known), what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from toolbag.config import TIERS, Config, ConfigError, config_path
from toolbag.gateway.patterns import is_glob, matching
from toolbag.gateway.policy import Policy, PolicyError, Rule, Subject, default_policy_path, load_policy_file
from toolbag.gateway.registry import ToolInfo, ToolRegistry
from toolbag.gateway.settings import TOOLS_ENV, default_tools_path, load_gateway_settings
from toolbag.routing import Needs, Router
from toolbag.skills.errors import Problem, SkillError, did_you_mean
from toolbag.skills.loader import SKILLS_DIR_ENV, default_skills_dir, load_skill
from toolbag.skills.model import Skill
from toolbag.skills.parse import SKILL_FILE
from toolbag.skills.validation import validate_skill_dir
from toolbag.skills.yamlfile import YamlDocument, YamlSyntaxError, load_yaml

__all__ = ["CheckReport", "Loaded", "Sources", "check_tree", "skill_needs"]

_EXAMPLE_CONFIG = "toolbag/defaults/toolbag.yaml"


@dataclass(frozen=True)
class Sources:
    """Where the agent configuration lives. ``policy`` / ``tools`` None: no such file (defaults apply)."""

    config: Path
    skills: Path
    policy: Path | None
    tools: Path | None

    @classmethod
    def discover(cls) -> Sources:
        """The files the fleet itself would read from the current directory and environment."""
        return cls(config_path(), default_skills_dir(), default_policy_path(), default_tools_path())


@dataclass(frozen=True)
class Loaded:
    """Everything a lock is built from, loaded and valid."""

    config: Config
    skills: tuple[Skill, ...]
    policy: Policy
    tools: Mapping[str, ToolInfo]


@dataclass
class CheckReport:
    """Problems that fail the check, warnings that do not, one summary line per source."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    loaded: Loaded | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def check_tree(sources: Sources) -> CheckReport:
    """Check every source; ``loaded`` is set only when there is no error."""
    report = CheckReport()
    config, doc = _check_config(sources.config, report)
    tools = _check_tools(sources.tools, report)
    skills = _check_skills(sources.skills, config, tools, report)
    if config is not None and doc is not None:
        report.errors.extend(_route_problems(config, skills, str(sources.config), doc))
    policy = _check_policy(sources.policy, config, tools, report)
    if report.ok and config is not None and tools is not None and policy is not None:
        report.loaded = Loaded(config, tuple(skills), policy, tools)
    return report


def skill_needs(skill: Skill) -> Needs:
    """What a skill requires of every model that may run it (as the client asks the router at submit)."""
    features = set(skill.required_features)
    return Needs(
        json_schema="json_schema" in features,
        tools="tools" in features,
        min_context_tokens=skill.route_hints.min_context_tokens or 0,
    )


# ------------------------------------------------------------------------------------------- config


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _where(doc: YamlDocument, path: Sequence[str | int]) -> str:
    line = doc.line(tuple(path))
    return f"line {line}, {_dotted(path)}" if line is not None else _dotted(path)


def _check_config(path: Path, report: CheckReport) -> tuple[Config | None, YamlDocument | None]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        report.errors.append(Problem(file, "", f"cannot read the config file ({err.strerror})",
                                     "Create it (copy toolbag/defaults/toolbag.yaml) or set TOOLBAG_CONFIG."))
        return None, None
    try:
        doc = load_yaml(text)
        data = yaml.safe_load(text)
    except (YamlSyntaxError, yaml.YAMLError) as err:
        line = getattr(err, "line", None)
        report.errors.append(Problem(file, f"line {line}" if line else "", f"not valid YAML: {err}",
                                     "Fix the YAML syntax (indentation, a missing colon or quote)."))
        return None, None
    if not isinstance(data, dict):
        report.errors.append(Problem(file, "line 1", "the top level must be a mapping of settings",
                                     f"Start from {_EXAMPLE_CONFIG}."))
        return None, doc
    problems = _reference_problems(data, file, doc)
    if not problems:
        try:
            config = Config.model_validate(data)
        except ValidationError as err:
            problems = [_validation_problem(file, doc, item) for item in err.errors()]
        else:
            report.summary.append(f"{file}: {len(config.providers)} providers, {len(config.models)} models, "
                                  f"{len(config.routes)} capabilities")
            return config, doc
    report.errors.extend(problems)
    return None, doc


def _plain(message: str) -> str:
    """A pydantic message without the ``Value error, `` a validator's ``ValueError`` gets."""
    return message.removeprefix("Value error, ")


def _validation_problem(file: str, doc: YamlDocument, item: ErrorDetails) -> Problem:
    path = tuple(item["loc"])
    message = _plain(str(item["msg"]))
    kind = item.get("type", "")
    if kind == "extra_forbidden":
        fix = f"Remove `{path[-1]}` or correct its spelling; {_EXAMPLE_CONFIG} shows every setting."
        message = f"unknown setting {str(path[-1])!r}"
    elif kind == "missing":
        fix = f"Add `{path[-1]}`; {_EXAMPLE_CONFIG} has an example."
    else:
        fix = f"See {_EXAMPLE_CONFIG} for a valid value."
    return Problem(file, _where(doc, path), message, fix)


def _reference_problems(data: dict[str, Any], file: str, doc: YamlDocument) -> list[Problem]:
    """Names that must resolve: every problem at once, with its line (pydantic would stop at the first)."""
    providers, models, routes = data.get("providers"), data.get("models"), data.get("routes")
    if not (isinstance(providers, dict) and isinstance(models, dict) and isinstance(routes, dict)):
        return []  # the shape is wrong: pydantic says how
    out: list[Problem] = []
    for name, model in models.items():
        provider = model.get("provider") if isinstance(model, dict) else None
        if isinstance(provider, str) and provider not in providers:
            out.append(Problem(
                file, _where(doc, ("models", name, "provider")),
                f"model {name!r} names provider {provider!r}, which is not under providers:"
                f"{did_you_mean(provider, sorted(providers))}",
                f"Use one of: {', '.join(sorted(providers))}; or add providers.{provider} with its kind.",
            ))
    for capability, per_tier in routes.items():
        if not isinstance(per_tier, dict):
            continue
        for tier, route in per_tier.items():
            if tier not in TIERS:
                out.append(Problem(file, _where(doc, ("routes", capability, tier)),
                                   f"route {capability}/{tier}: unknown tier{did_you_mean(str(tier), TIERS)}",
                                   f"Use one of: {', '.join(TIERS)}."))
            candidates = route.get("candidates") if isinstance(route, dict) else None
            for i, candidate in enumerate(candidates if isinstance(candidates, list) else []):
                if candidate not in models:
                    out.append(Problem(
                        file, _where(doc, ("routes", capability, tier, "candidates", i)),
                        f"route {capability}/{tier} names model {candidate!r}, which is not under models:"
                        f"{did_you_mean(str(candidate), sorted(models))}",
                        f"Use one of: {', '.join(sorted(models))}; or add models.{candidate} "
                        "(provider, model_id, context_window, features).",
                    ))
    return out


# ------------------------------------------------------------------------------------------- routes


def _lacking(router: Router, model: str, needs: Needs, skill: Skill) -> list[str]:
    entry = router.config.models[model]
    out = []
    if needs.json_schema and not router.meets(model, Needs(json_schema=True)):
        out.append("it has no structured output (features.json_schema: false)")
    if needs.tools and not router.meets(model, Needs(tools=True)):
        out.append(f"it cannot call tools (features.tools: false) and the skill allows {' '.join(skill.allowed_tools)}")
    if needs.min_context_tokens and not router.meets(model, Needs(min_context_tokens=needs.min_context_tokens)):
        out.append(f"its context window ({entry.context_window} tokens) is below the skill's "
                   f"min-context ({needs.min_context_tokens})")
    return out


def _route_problems(config: Config, skills: Sequence[Skill], file: str, doc: YamlDocument) -> list[Problem]:
    router = Router(config)
    out: list[Problem] = []
    for skill in skills:
        per_tier = config.routes.get(skill.capability)
        if per_tier is None:
            continue  # the skill validator reports a capability without a route
        needs = skill_needs(skill)
        for tier, route in sorted(per_tier.items()):
            for i, candidate in enumerate(route.candidates):
                if router.meets(candidate, needs):
                    continue
                out.append(Problem(
                    file, _where(doc, ("routes", skill.capability, tier, "candidates", i)),
                    f"{candidate} cannot run skill {skill.name!r} (capability {skill.capability}): "
                    + "; ".join(_lacking(router, candidate, needs, skill)),
                    f"Take {candidate} out of routes.{skill.capability}.{tier}, or correct "
                    f"models.{candidate} (features, context_window) if the model really can.",
                ))
    return out


# ------------------------------------------------------------------------------------------- skills


def _check_skills(
    root: Path, config: Config | None, tools: Mapping[str, ToolInfo] | None, report: CheckReport
) -> list[Skill]:
    if not root.is_dir():
        report.errors.append(Problem(str(root), "", "the skills folder does not exist",
                                     f"Create it, or point {SKILLS_DIR_ENV} at the skills folder."))
        return []
    folders = sorted(e for e in root.iterdir() if e.is_dir() and not e.name.startswith("."))
    capabilities = list(config.routes) if config is not None else None
    targets = [*config.providers, *config.models] if config is not None else None
    skills: list[Skill] = []
    for folder in folders:
        problems = validate_skill_dir(folder, capabilities=capabilities, route_targets=targets)
        if problems:
            report.errors.extend(problems)
            continue
        try:
            skill = load_skill(folder)
        except SkillError as err:  # validated a moment ago; a file changed in between
            report.errors.append(Problem(str(folder), "", str(err), "Run `toolbag check` again."))
            continue
        if tools is not None:
            for pattern in skill.allowed_tools:
                if not matching(tools, [pattern]):
                    report.errors.append(Problem(
                        str(folder / SKILL_FILE), "allowed-tools",
                        f"no tool in tools.yaml is called {pattern!r}{did_you_mean(pattern, sorted(tools))}",
                        "Register the tool in tools.yaml (a local module or an MCP server), "
                        "or take it out of allowed-tools.",
                    ))
        skills.append(skill)
    report.summary.append(f"{root}: {len(folders)} skills" + (" (none)" if not folders else ""))
    return skills


# -------------------------------------------------------------------------------------------- tools


def _strip_source(message: str, file: str) -> str:
    return message.removeprefix(f"{file}: ")


def _check_tools(path: Path | None, report: CheckReport) -> dict[str, ToolInfo] | None:
    file = str(path) if path is not None else "tools.yaml (none: built-in tools)"
    try:
        settings = load_gateway_settings(path)
        registry = ToolRegistry(settings)
    except ConfigError as err:
        report.errors.append(Problem(file, "", _strip_source(str(err), file),
                                     f"Fix tools.yaml (or {TOOLS_ENV}); its header shows the format."))
        return None
    try:
        catalog = registry.catalog()
    finally:
        registry.close()
    for server in settings.mcp:
        if not any(t.source == f"mcp:{server}" for t in catalog.values()):
            report.errors.append(Problem(
                file, f"mcp.{server}", f"MCP server {server!r} listed no tools: it is unreachable or failed to start",
                "Start it or fix its command/url; the lock pins every tool, so the check needs every server.",
            ))
    report.summary.append(f"{file}: {len(catalog)} tools")
    return catalog


# ------------------------------------------------------------------------------------------- policy


def _policy_problems(file: str, err: PolicyError) -> list[Problem]:
    fix = "See the format at the top of policy.yaml: version, then rules with id, agents, models, tools."
    lines = str(err).splitlines()
    items = [line.strip()[2:] for line in lines[1:] if line.strip().startswith("- ")]
    if not items:
        return [Problem(file, "", _strip_source(lines[0] if lines else str(err), file), fix)]
    out = []
    for item in items:
        where, _, message = item.partition(": ")
        out.append(Problem(file, where, _plain(message) or where, fix))
    return out


def _model_matches(pattern: str, config: Config) -> bool:
    """Does ``pattern`` match any configured model? Asked of the gateway's own evaluation."""
    probe = Policy(version=1, rules=(Rule(id="probe", agents=["*"], models=[pattern], tools=["*"]),),
                   digest="probe", text="")
    return any(
        probe.decide(Subject("*", m.provider, name, m.model_id), "probe", None).allowed
        for name, m in config.models.items()
    )


def _check_policy(
    path: Path | None, config: Config | None, tools: Mapping[str, ToolInfo] | None, report: CheckReport
) -> Policy | None:
    if path is None:
        report.warnings.append(Problem("policy.yaml", "", "there is no policy file: every tool call is denied",
                                       "Create policy.yaml (or set TOOLBAG_POLICY) to grant tools."))
        return Policy.empty()
    file = str(path)
    try:
        policy = load_policy_file(path)
    except PolicyError as err:
        report.errors.extend(_policy_problems(file, err))
        return None
    try:
        doc: YamlDocument | None = load_yaml(policy.text)
    except YamlSyntaxError:
        doc = None
    for i, rule in enumerate(policy.rules):
        line = doc.line(("rules", i)) if doc is not None else None
        where = (f"line {line}, " if line else "") + f"rule {rule.id!r}"
        if tools is not None and rule.effect == "allow":
            for pattern in rule.tools:
                if not is_glob(pattern) and pattern not in tools:
                    report.warnings.append(Problem(
                        file, where, f"grants tool {pattern!r}, which no source in tools.yaml provides"
                        f"{did_you_mean(pattern, sorted(tools))}",
                        "Correct the name, or register the tool in tools.yaml.",
                    ))
        if config is not None:
            for pattern in rule.models:
                if not _model_matches(pattern, config):
                    report.warnings.append(Problem(
                        file, where, f"model pattern {pattern!r} matches no model in toolbag.yaml",
                        "Write provider/model or model (config name or vendor id), e.g. anthropic/* or gpt-*.",
                    ))
    report.summary.append(f"{file}: version {policy.version}, {len(policy.rules)} rules")
    return policy
