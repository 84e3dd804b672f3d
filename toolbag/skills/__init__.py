"""Skills: versioned, model-agnostic recipes in ``skills/<name>/`` (SKILL.md, schema.json, evals.yaml).

Load one with :class:`SkillLibrary` (``get``) or :func:`load_skill`; check a job's input with
:func:`validate_input`; build the request with :func:`render`; judge the answer with
:func:`validate_output` / :func:`accept_output`; list what is wrong with a folder with
:func:`validate_skill_dir`; judge an eval case with :func:`check_case`.
"""

from toolbag.skills.canonical import canonical_json
from toolbag.skills.contract import accept_output, validate_input, validate_output
from toolbag.skills.errors import Problem, SkillError, SkillInputError, SkillLoadError, SkillNotFound
from toolbag.skills.evals import check_case
from toolbag.skills.hashing import content_hash
from toolbag.skills.loader import SkillLibrary, default_skills_dir, default_skills_root, load_skill
from toolbag.skills.model import Check, EvalCase, Example, RouteHints, Skill
from toolbag.skills.render import render, request_bytes
from toolbag.skills.validation import validate_skill_dir

__all__ = [
    # the skill
    "Skill",
    "RouteHints",
    "EvalCase",
    "Check",
    "Example",
    # loading
    "SkillLibrary",
    "load_skill",
    "default_skills_dir",
    "default_skills_root",
    "content_hash",
    # validating
    "validate_skill_dir",
    "Problem",
    "validate_input",
    "validate_output",
    "accept_output",
    # rendering
    "render",
    "request_bytes",
    "canonical_json",
    # evals
    "check_case",
    # errors
    "SkillError",
    "SkillNotFound",
    "SkillLoadError",
    "SkillInputError",
]
