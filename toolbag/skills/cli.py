"""``toolbag skills ...``: list, show, validate and render skills (mounted by :mod:`toolbag.cli`).

Exit status: 0 on success; 1 when ``validate`` finds problems in a skill (the report is on stdout);
2 when the command cannot do what was asked (an unknown skill, bad input, an unreadable config), with
one ``error:`` line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import typer

from toolbag.cli.fail import fail
from toolbag.config import TIERS, Config, ConfigError, Tier, load_config
from toolbag.skills.canonical import canonical_json
from toolbag.skills.errors import Problem, SkillError, SkillLoadError
from toolbag.skills.loader import SKILLS_DIR_ENV, SkillLibrary, default_skills_dir
from toolbag.skills.model import Skill
from toolbag.skills.render import render, request_dict
from toolbag.skills.validation import validate_skill_dir
from toolbag.skills.yamlfile import YamlSyntaxError, load_yaml

EXIT_PROBLEMS = 1  # `validate` ran and found problems in a skill
_TIERS: tuple[Tier, ...] = get_args(Tier)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="List, show, validate and render skills.\n\n"
    "Exit status: 0 on success; 1 when validate finds problems in a skill; 2 when the command cannot run "
    "(an unknown skill, bad input, an unreadable config), with one error: line on stderr.",
)


def _library(ctx: typer.Context) -> SkillLibrary:
    root = ctx.obj.get("root") if isinstance(ctx.obj, dict) else None
    return SkillLibrary(root if root is not None else default_skills_dir())


def _skill(ctx: typer.Context, name: str) -> Skill:
    """The skill ``name``, or exit 2 saying why it cannot be used."""
    try:
        return _library(ctx).get(name)
    except SkillLoadError as err:
        fail(invalid_skill(name, err))
    except SkillError as err:
        fail(str(err))


def invalid_skill(name: str, err: SkillLoadError) -> str:
    """A broken skill as one error line (:meth:`SkillLoadError.summary`)."""
    return err.summary(name)


@app.callback()
def _root(
    ctx: typer.Context,
    skills_dir: Path | None = typer.Option(
        None, "--dir", envvar=SKILLS_DIR_ENV, help="The skills folder (default: ./skills)."
    ),
) -> None:
    ctx.obj = {"root": skills_dir}


@app.command("list")
def list_skills(ctx: typer.Context) -> None:
    """One line per skill: name, version, capability, default tier, description.

    Exit status: 0 (a broken skill is marked INVALID), 2 when the folder holds no skills.
    """
    library = _library(ctx)
    names = library.names()
    if not names:
        fail(f"no skills in {library.root} (a skill is a folder holding a SKILL.md)")
    width = max(len(n) for n in names)
    for name in names:
        try:
            skill = library.get(name)
        except SkillError:
            typer.echo(f"{name:<{width}}  INVALID: run `toolbag skills validate {name}` to see why")
            continue
        description = skill.description if len(skill.description) <= 70 else skill.description[:67] + "..."
        typer.echo(f"{name:<{width}}  {skill.version:<8} {skill.capability:<12} {skill.default_tier:<11} {description}")


def _describe_fields(schema: Any, indent: str = "  ") -> list[str]:
    lines = []
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
    for name, sub in properties.items():
        sub = sub if isinstance(sub, dict) else {}
        kind = sub.get("type", "any")
        kind_text = " or ".join(kind) if isinstance(kind, list) else str(kind)
        if "enum" in sub:
            kind_text += " (one of: " + ", ".join(str(v) for v in sub["enum"]) + ")"
        flags = ", required" if name in required else ""
        if "default" in sub:
            flags += f", default {json.dumps(sub['default'])}"
        about = f" - {sub['description']}" if sub.get("description") else ""
        lines.append(f"{indent}{name}: {kind_text}{flags}{about}")
    return lines


@app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="The skill's name.")) -> None:
    """Everything about one skill: fields, schemas, hints, evals and content hash.

    Exit status: 0, or 2 when the skill is unknown or not valid.
    """
    skill = _skill(ctx, name)
    hints = skill.route_hints
    hint_parts = [
        *(["prefer=" + ",".join(hints.prefer)] if hints.prefer else []),
        *(["avoid=" + ",".join(hints.avoid)] if hints.avoid else []),
        *([f"min-context={hints.min_context_tokens}"] if hints.min_context_tokens else []),
        *(["needs=" + ",".join(hints.needs)] if hints.needs else []),
    ]
    lines = [
        f"{skill.name} {skill.version}",
        f"  {skill.description}",
        "",
        f"capability:        {skill.capability}",
        f"default tier:      {skill.default_tier}",
        f"max output tokens: {skill.max_output_tokens}",
        f"allowed tools:     {' '.join(skill.allowed_tools) or '(none)'}",
        f"route hints:       {' '.join(hint_parts) or '(none)'}",
        f"needs features:    {', '.join(skill.required_features)}",
        f"license:           {skill.license or '(none)'}",
        f"content hash:      {skill.content_hash}",
        f"folder:            {skill.path}",
        "",
        "input:",
        *_describe_fields(skill.input_schema),
        "output:",
        *_describe_fields(skill.output_schema),
        "",
        f"examples shown to the model: {len(skill.examples)}",
        f"eval cases: {len(skill.evals)}",
    ]
    for case in skill.evals:
        semantic = sum(1 for c in case.checks if c.semantic)
        structural = len(case.checks) - semantic
        lines.append(f"  {case.id}: {structural} structural check(s), {semantic} semantic check(s)")
    typer.echo("\n".join(lines))


def _print_problems(folder: Path, problems: list[Problem]) -> None:
    if not problems:
        typer.echo(f"ok       {folder}")
        return
    typer.echo(f"PROBLEMS {folder}: {len(problems)}")
    for problem in problems:
        typer.echo(f"  - {problem}")


def _config_names() -> tuple[list[str] | None, list[str] | None, str]:
    try:
        config = load_config()
    except ConfigError as err:
        first = str(err).splitlines()[0]
        return None, None, f"note: capabilities were not checked, the config cannot be read: {first}"
    return list(config.routes), [*config.providers, *config.models], ""


@app.command("validate")
def validate(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="A skill name or a skill folder; all skills when omitted."),
) -> None:
    """Check skills against the Agent Skills format and toolbag's rules.

    Exit status: 0 when every skill is valid, 1 when any has problems, 2 when there is no such skill.
    """
    library = _library(ctx)
    if name is None:
        if not library.root.is_dir():
            fail(f"the skills folder {library.root} does not exist")
        folders = sorted(entry for entry in library.root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
        if not folders:
            fail(f"no skill folders in {library.root}")
    else:
        by_name, by_path = library.root / name, Path(name)
        if by_name.is_dir():
            folders = [by_name]
        elif by_path.is_dir():
            folders = [by_path]
        else:
            known = ", ".join(library.names()) or "none"
            fail(f"no skill named {name!r} in {library.root} and no folder {name!r} (known: {known})")
    capabilities, targets, note = _config_names()
    if note:
        typer.echo(note, err=True)
    failed = 0
    for folder in folders:
        problems = validate_skill_dir(folder, capabilities=capabilities, route_targets=targets)
        _print_problems(folder, problems)
        failed += bool(problems)
    if len(folders) > 1:
        typer.echo(
            f"{len(folders)} skills checked: "
            + ("all valid" if not failed else f"{failed} with problems, {len(folders) - failed} valid")
        )
    if failed:
        raise typer.Exit(code=EXIT_PROBLEMS)


def _read_input(text: str) -> Any:
    if text.startswith("@"):
        file = Path(text[1:])
        try:
            content = file.read_text(encoding="utf-8")
        except OSError as err:
            fail(f"cannot read the input file {file}: {err.strerror}")
        if file.suffix in (".yaml", ".yml"):
            try:
                return load_yaml(content).data
            except YamlSyntaxError as err:
                fail(f"{file}: not valid YAML (line {err.line}): {err}")
        source = str(file)
    else:
        content, source = text, "--input"
    try:
        return json.loads(content)
    except json.JSONDecodeError as err:
        fail(f"{source}: not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}")


def _tier(value: str | None, default: Tier) -> Tier:
    if value is None:
        return default
    for tier in _TIERS:
        if tier == value:
            return tier
    fail(f"--tier: {value!r} is not a tier; use one of: {', '.join(TIERS)}")


def _pick_model(config: Config, skill: Skill, provider: str, tier: Tier, model: str | None) -> str:
    if model is not None:
        if model not in config.models:
            fail(f"unknown model {model!r}; models in the config: {', '.join(sorted(config.models))}")
        return model
    if skill.capability in config.routes:
        for candidate in config.route(skill.capability, tier).candidates:
            if config.provider_of(candidate) == provider:
                return candidate
    for name, entry in config.models.items():
        if entry.provider == provider:
            return name
    fail(f"provider {provider!r} has no models in the config")


def _wire(config: Config, provider: str, model: str, request: Any) -> dict[str, Any]:
    from toolbag.providers.registry import build_adapter

    adapter = build_adapter(provider, config)
    try:
        wire = adapter.wire_request(config.models[model].model_id, request)
    finally:
        adapter.close()
    body: dict[str, Any] = json.loads(json.dumps(wire, default=str))
    return body


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The skill's name."),
    input_text: str | None = typer.Option(
        None, "--input", "-i", help="The input as JSON, or @file (.json, .yaml). Default: the first eval case."
    ),
    case: str | None = typer.Option(None, "--case", help="Use this eval case's input."),
    provider: str | None = typer.Option(
        None, "--provider", "-p", help="A provider from toolbag.yaml, or 'all'. Omit for the neutral request."
    ),
    model: str | None = typer.Option(None, "--model", help="A model from toolbag.yaml (default: the route's first)."),
    tier: str | None = typer.Option(
        None, "--tier", help="The tier whose route picks the model (default: the skill's)."
    ),
    feedback: str | None = typer.Option(None, "--feedback", help="Render a retry after this validation error."),
) -> None:
    """Print, as canonical JSON, exactly what a vendor receives for this skill and input.

    Exit status: 0, or 2 when the skill, the input or a name given is wrong, or the config cannot be read.
    """
    skill = _skill(ctx, name)
    if input_text is not None and case is not None:
        fail("give --input or --case, not both")
    notes: list[str] = []  # said on stderr once everything checked out: an error stays the only line
    if input_text is not None:
        value = _read_input(input_text)
    else:
        try:
            chosen = skill.case(case) if case is not None else skill.evals[0]
        except KeyError as err:
            fail(str(err.args[0]))
        notes.append(f"# input: eval case {chosen.id!r}")
        value = dict(chosen.input)
    try:
        request = render(skill, value, feedback=feedback)
    except SkillError as err:
        fail(str(err))
    if provider is None:
        if notes:
            typer.echo("\n".join(notes), err=True)
        typer.echo(canonical_json(request_dict(request), pretty=True))
        return
    try:
        config = load_config()
    except ConfigError as err:
        fail(str(err))
    route_tier = _tier(tier, skill.default_tier)
    names = sorted(config.providers) if provider == "all" else [provider]
    for p in names:
        if p not in config.providers:
            fail(f"unknown provider {p!r}; providers in the config: {', '.join(sorted(config.providers))}")
    out: dict[str, Any] = {}
    for p in names:
        chosen_model = _pick_model(config, skill, p, route_tier, model if len(names) == 1 else None)
        try:
            out[p] = _wire(config, p, chosen_model, request)
        except ConfigError as err:
            fail(str(err))
        notes.append(f"# {p}: model {chosen_model} ({config.models[chosen_model].model_id})")
    typer.echo("\n".join(notes), err=True)
    typer.echo(canonical_json(out[names[0]] if len(names) == 1 else out, pretty=True))


def main() -> None:  # pragma: no cover - for `python -m toolbag.skills.cli`
    app(prog_name="toolbag skills")


if __name__ == "__main__":  # pragma: no cover
    main()
