"""Every command and Python snippet in README.md and docs/*.md runs as written, against one fleet on the simulator.

What a fenced block is, is said by its info string (the words after the opening fence; GitHub colours the
block by the first word and shows none of the rest):

- ``bash``: every command (a line, or lines joined by a trailing ``\\``) must exit 0, or the code its trailing
  comment names (``# exits 1: denied``). The block runs as one bash script, so variables carry over.
- ``console``: the same for the lines that start with ``$ ``; each other line is sample output, which must be
  a line the commands print, numbers aside (and the fleet's key prefix printed as the default ``tb:``).
- ``python``: run with ``python -c``; it must exit 0.
- ``LANG no-run: REASON``: not run, and the reason (it needs Docker, runs until Ctrl-C, ...) is required.
- ``LANG synopsis``: a command's shape, with placeholders: every ``toolbag`` command in it must exist, with every
  ``--option`` it names.
- ``LANG file=PATH`` / ``LANG append=PATH``: written to (appended to) PATH in the doc's working copy when the run
  reaches it, so the commands below it find the very file the doc shows.
- ``LANG excerpt=PATH``: each of its lines is a line of that repository file, in order (a ``  # comment`` at the
  end of a line, on either side, is not compared).
- any other language (``text``, ``yaml``, ``json``, ...), or none, is shown only, and must not hold a command
  line: a command is run, or marked ``synopsis`` or ``no-run``.

Each doc runs in a working copy of its own (the fleet's ``toolbag.yaml``, and the repository's ``policy.yaml``,
``tools.yaml`` and ``toolbag.lock``; ``skills/`` is the fleet's skill folder, so a skill a doc adds is one the
workers can run), with ``toolbag`` on PATH and ``TOOLBAG_REDIS_URL`` naming the fleet's Redis.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import REPO, Fleet, running_fleet

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = ("bash", "console", "python")
SHOWN = ("", "text", "yaml", "json", "jsonl", "csv", "markdown", "promql")
MAX_BLOCKS = 200  # per document: the parser is a bounded, line-by-line scan
BLOCK_TIMEOUT_S = 150

FENCE = re.compile(r"^( *)(`{3,})(.*)$")
EXIT_COMMENT = re.compile(r"\s#\s*exits (\d+)\b[^'\"]*$")
COMMAND_LINE = re.compile(r"^\s*(\$ |toolbag |scripts/|\.venv/bin/|python3? |docker |helm |kubectl |cp )")
END_COMMENT = re.compile(r"\s+#\s.*$")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    no_run: str | None = None
    synopsis: bool = False
    write: tuple[str, str] | None = None  # ("file" | "append", path)
    excerpt: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def parse_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc``, in order, each with what its info string says."""
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, ticks, info = len(opening.group(1)), opening.group(2), opening.group(3).strip()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf" *{ticks}`*\s*", lines[end]):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{doc.relative_to(REPO)}:{i + 1}: a fence that is never closed")
        body = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[i + 1:end])
        blocks.append(_block(doc, i + 1, info, body + "\n"))
        if len(blocks) > MAX_BLOCKS:
            raise AssertionError(f"{doc.relative_to(REPO)}: more than {MAX_BLOCKS} blocks")
        i = end + 1
    return blocks


def _block(doc: Path, line: int, info: str, body: str) -> Block:
    lang, _, rest = info.partition(" ")
    block = Block(doc, line, lang, body)
    if lang and lang not in RUN + SHOWN:
        block.problems.append(f"unknown language {lang!r}: one of {', '.join(RUN + SHOWN[1:])}")
    if "no-run" in rest:
        reason = rest.partition("no-run")[2].lstrip(":").strip()
        block.no_run = reason
        if not reason:
            block.problems.append("`no-run` needs a reason: `no-run: needs Docker`")
        return block
    for word in rest.split():
        key, eq, value = word.partition("=")
        if word == "synopsis":
            block.synopsis = True
        elif eq and key in ("file", "append") and value and not value.startswith("/") and ".." not in value:
            block.write = (key, value)
        elif eq and key == "excerpt" and value:
            block.excerpt = value
        else:
            block.problems.append(f"unknown word {word!r} in the info string")
    if lang not in RUN and not block.synopsis:
        for text in body.splitlines():
            if COMMAND_LINE.match(text):
                block.problems.append(f"a command in a {lang!r} block: make it bash/console, synopsis or no-run: "
                                      f"{text.strip()[:80]}")
                break
    return block


def commands(block: Block) -> list[str]:
    """The commands of a bash or console block: logical lines (a trailing ``\\`` joins the next), no comments."""
    out: list[str] = []
    pending: list[str] = []
    for raw in block.body.splitlines():
        if not pending:
            if block.lang == "console":
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        out.append(" ".join(part.strip() for part in [*pending, raw]))
        pending = []
    assert not pending, f"{block.where}: the last command ends with a backslash"
    return out


def sample_output(block: Block) -> list[str]:
    """The sample output of a console block: its lines that are neither a command nor the rest of one."""
    out: list[str] = []
    continued = False
    for raw in block.body.splitlines():
        if raw.startswith("$ ") or continued:
            continued = raw.endswith("\\")
        elif raw.strip():
            out.append(raw)
    return out


def shape(line: str) -> str:
    """A line with every number as ``N`` and every run of blanks as one space."""
    return " ".join(NUMBER.sub("N", line).split())


def expected_exit(command: str) -> int:
    found = EXIT_COMMENT.search(command)
    return int(found.group(1)) if found else 0


def shell_script(block: Block) -> tuple[str, list[str]]:
    """A bash script running the block's commands in order; a command that does not exit as documented stops it
    with ``DOCS-TEST <index> <status>`` on stderr."""
    cmds = commands(block)
    lines = ["set -o pipefail"]
    for n, cmd in enumerate(cmds):
        want = expected_exit(cmd)
        lines.append(cmd)
        lines.append(f'__s=$?; if [ "$__s" != {want} ]; then echo "DOCS-TEST {n} $__s" >&2; exit 97; fi')
    return "\n".join(lines) + "\n", cmds


def _all_blocks() -> list[Block]:
    return [block for doc in DOCS for block in parse_blocks(doc)]


# -- static checks: no fleet needed -----------------------------------------------------------------------


def test_every_fenced_block_says_what_it_is() -> None:
    problems = [f"{b.where}: {p}" for b in _all_blocks() for p in b.problems]
    assert not problems, "\n".join(problems)


def test_the_docs_run_commands_and_snippets() -> None:
    """The convention is in use: a doc change that turns every block into text would fail here."""
    blocks = _all_blocks()
    runnable = [b for b in blocks if b.lang in RUN and b.no_run is None and not b.synopsis]
    assert len([b for b in runnable if b.lang == "python"]) >= 4, "the README's and docs' Python snippets run"
    assert len(runnable) >= 15


def test_excerpts_are_lines_of_the_files_they_name() -> None:
    problems = []
    for block in _all_blocks():
        if block.excerpt is None:
            continue
        source = REPO / block.excerpt
        if not source.is_file():
            problems.append(f"{block.where}: excerpt of {block.excerpt}, which does not exist")
            continue
        have = [END_COMMENT.sub("", x).rstrip() for x in source.read_text(encoding="utf-8").splitlines()]
        at = 0
        for text in block.body.splitlines():
            wanted = END_COMMENT.sub("", text).rstrip()
            if not wanted:
                continue
            try:
                at = have.index(wanted, at) + 1
            except ValueError:
                problems.append(f"{block.where}: not a line of {block.excerpt} (after the lines before it): "
                                f"{wanted!r}")
                break
    assert not problems, "\n".join(problems)


def test_synopses_name_commands_and_options_that_exist() -> None:
    import typer.main

    from toolbag.cli.app import app

    root: Any = typer.main.get_command(app)
    problems = []
    for block in _all_blocks():
        if not block.synopsis:
            continue
        for text in block.body.splitlines():
            for segment in re.split(r"\s{3,}", END_COMMENT.sub("", text).strip()):
                if not segment:
                    continue
                if not segment.startswith("toolbag "):
                    problems.append(f"{block.where}: a synopsis holds `toolbag` commands only: {segment!r}")
                    continue
                command = root
                for word in segment.split()[1:]:
                    if not isinstance(getattr(command, "commands", None), dict) or not re.fullmatch(r"[a-z][a-z-]*",
                                                                                                     word):
                        break
                    if word not in command.commands:
                        problems.append(f"{block.where}: no command `{word}` in {segment!r}")
                        break
                    command = command.commands[word]
                known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", segment):
                    if option not in known:
                        problems.append(f"{block.where}: `{command.name}` has no option {option} ({segment!r})")
    assert not problems, "\n".join(problems)


# -- running the docs against a fleet ----------------------------------------------------------------------


@dataclass
class DocsFleet:
    fleet: Fleet
    skills: Path
    config_text: str


@pytest.fixture(scope="module")
def docs_fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsFleet]:
    tmp = tmp_path_factory.mktemp("docs-fleet")
    skills = tmp / "skills"
    shutil.copytree(REPO / "skills", skills)
    with running_fleet(redis_server, tmp, concurrency=8, env={"TOOLBAG_SKILLS_DIR": str(skills)}) as fleet:
        assert fleet.config_path is not None
        yield DocsFleet(fleet, skills, fleet.config_path.read_text(encoding="utf-8"))


def working_copy(docs: DocsFleet, tmp: Path) -> tuple[Path, dict[str, str]]:
    """A folder laid out as a checkout, and the environment of a shell in it next to a running fleet."""
    work = tmp / "work"
    work.mkdir()
    (work / "skills").symlink_to(docs.skills, target_is_directory=True)
    (work / "toolbag.yaml").write_text(docs.config_text, encoding="utf-8")
    for name in ("policy.yaml", "tools.yaml", "toolbag.lock"):
        shutil.copy(REPO / name, work / name)
    env = {k: v for k, v in docs.fleet.env.items()
           if k not in ("TOOLBAG_CONFIG", "TOOLBAG_SKILLS_DIR", "TOOLBAG_POLICY", "TOOLBAG_TOOLS",
                        "TOOLBAG_AUDIT_JSONL", "TOOLBAG_SIMULATOR_URL")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return work, env


def run_block(block: Block, work: Path, env: dict[str, str], key_prefix: str = "tb:") -> str | None:
    """Run one block; None when it behaved as documented, else what went wrong."""
    if block.write is not None:
        mode, name = block.write
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if mode == "append" else "w", encoding="utf-8") as f:
            f.write(block.body)
        return None
    if block.lang not in RUN or block.no_run is not None or block.synopsis:
        return None
    cmds: list[str] = []
    if block.lang == "python":
        argv = [sys.executable, "-c", block.body]
    else:
        script, cmds = shell_script(block)
        argv = ["bash", "-c", script]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        return f"{block.where}: still running after {BLOCK_TIMEOUT_S} s\n{err.stderr!r}"
    if done.returncode == 0:
        printed = {shape(line) for line in (done.stdout + done.stderr).replace(key_prefix, "tb:").splitlines()}
        samples = sample_output(block) if block.lang == "console" else []
        missing = [line for line in samples if shape(line) not in printed]
        if not missing:
            return None
        return (f"{block.where}: the sample output shows lines the commands do not print:\n" + "\n".join(missing)
                + f"\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    failed = re.search(r"^DOCS-TEST (\d+) (\d+)$", done.stderr, re.MULTILINE)
    what = f"exited {done.returncode}"
    if failed:
        cmd = cmds[int(failed.group(1))]
        what = f"`{cmd}` exited {failed.group(2)}, expected {expected_exit(cmd)}"
    return (f"{block.where} ({block.lang}, {time.monotonic() - started:.1f} s): {what}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_doc_runs_as_written(doc: Path, docs_fleet: DocsFleet, tmp_path: Path) -> None:
    work, env = working_copy(docs_fleet, tmp_path)
    for block in parse_blocks(doc):
        problem = run_block(block, work, env, docs_fleet.fleet.config.fleet.key_prefix)
        assert problem is None, problem


def test_a_dry_run_counts_no_rejected_submission(docs_fleet: DocsFleet, tmp_path: Path) -> None:
    """operating.md: toolbag_jobs_rejected_total counts submissions refused at the edge; a dry run submits
    nothing, so an invalid line it finds is not one."""
    work, env = working_copy(docs_fleet, tmp_path)
    (work / "in.jsonl").write_text('{"id": "ok", "text": "fine"}\n{"id": "bad", "text": ""}\n', encoding="utf-8")
    store = docs_fleet.fleet.client.store
    before = {k: v for k, v in store.redis.hgetall(store.keys.stats).items() if k.startswith(b"rejected|")}
    done = subprocess.run(["toolbag", "batch", "run", "in.jsonl", "--skill", "summarize", "-o", "out.jsonl",
                           "--dry-run"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    assert "1 invalid" in done.stdout, done.stdout
    after = {k: v for k, v in store.redis.hgetall(store.keys.stats).items() if k.startswith(b"rejected|")}
    assert after == before, "a dry run submits nothing and counts no rejection"
    assert not (work / "out.jsonl").exists()


def test_a_line_without_an_id_is_named_by_its_line_number(docs_fleet: DocsFleet, tmp_path: Path) -> None:
    """bulk.md: a line without an id gets its line number as its id, the integer `line` also holds."""
    work, env = working_copy(docs_fleet, tmp_path)
    (work / "in.jsonl").write_text('{"id": "a", "text": "first"}\n{"text": "second, no id"}\n', encoding="utf-8")
    done = subprocess.run(["toolbag", "batch", "run", "in.jsonl", "--skill", "summarize", "-o", "out.jsonl"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = {r["line"]: r for r in map(json.loads, (work / "out.jsonl").read_text().splitlines())}
    assert records[1]["id"] == "a" and records[2]["id"] == 2, records


def test_commands_are_split_and_their_documented_exit_codes_read() -> None:
    block = Block(REPO / "README.md", 1, "console",
                  "$ toolbag a \\\n    --b 1   # exits 1: denied\nsome output\n"
                  "$ toolbag c '# exits 3'   # exit 2 is a word\n")
    assert commands(block) == ["toolbag a --b 1   # exits 1: denied", "toolbag c '# exits 3'   # exit 2 is a word"]
    assert sample_output(block) == ["some output"]
    assert shape("cost $0.0004;  0.2s, 1,024 lines") == shape("cost $1.5; 12s, 3 lines") == "cost $N; Ns, N lines"
    assert [expected_exit(c) for c in commands(block)] == [1, 0]
    assert shlex.split(commands(block)[1], comments=True) == ["toolbag", "c", "# exits 3"]
