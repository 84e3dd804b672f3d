"""What can go wrong with a skill, phrased for the person who must fix it.

``SkillError`` is the root::

    SkillError
    ├── SkillNotFound      no folder with that name in the library
    ├── SkillLoadError     the folder exists but the skill is broken (carries every Problem)
    └── SkillInputError    a job's input does not match the skill's input schema (names field and rule)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from toolbag.errors import ToolbagError


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a skill: which file, where in it, what is wrong, and how to fix it."""

    file: str
    location: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}, {self.location}" if self.location else self.file
        text = f"{where}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class SkillError(ToolbagError):
    """Base class for every skill error."""


class SkillNotFound(SkillError, KeyError):
    """No skill of that name exists in the library."""

    def __init__(self, name: str, root: str, known: Sequence[str]) -> None:
        hint = (f" (known: {', '.join(known)})" if known
                else " (the folder holds no skills; set TOOLBAG_SKILLS_DIR to the skills folder)")
        super().__init__(f"no skill named {name!r} in {root}{hint}")
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SkillLoadError(SkillError):
    """A skill folder that does not pass validation; ``problems`` lists every reason."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = [f"skill at {path} is not valid ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def summary(self, name: str) -> str:
        """One line: the first problem with its fix, and where to see the others."""
        first, more = self.problems[0], len(self.problems) - 1
        where = f"{first.file}, {first.location}" if first.location else first.file
        fix = f"; fix: {first.fix}" if first.fix else ""
        others = f" ({more} more: `toolbag skills validate {name}` lists every problem)" if more else ""
        return f"skill {name!r} is not valid: {where}: {first.message}{fix}{others}"


class SkillInputError(SkillError, ValueError):
    """A job input that fails the skill's input schema. ``errors`` are ``"input.<path>: <rule>"`` lines."""

    def __init__(self, skill: str, errors: Sequence[str]) -> None:
        self.skill = skill
        self.errors = tuple(errors)
        #: The path of the first offending value, e.g. ``input.total``.
        self.path = self.errors[0].split(":", 1)[0] if self.errors else "input"
        if len(self.errors) == 1:
            text = f"skill {skill!r}: {self.errors[0]}"
        else:
            text = f"skill {skill!r}: {len(self.errors)} problems in the input: " + "; ".join(self.errors)
        super().__init__(text)


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``options`` is close to ``word``, else nothing."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
