"""The docs stand on their own: no reference outside the repository, and every file path they name exists; and
what they state that no command shows holds (tests/test_docs_run.py runs their commands and snippets)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Notes that lived beside the repository once; the repository must not send a reader to them.
OUTSIDE = re.compile(r"DESIGN\.md|providers\.md|gateways\.md|celery\.md|style\.md|\.\./shared")
REPO_PATH = re.compile(r"`((?:toolbag|workers|tests|bench|scripts|deploy|helm|docs|skills)/[A-Za-z0-9_./-]{1,200})`")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".md", ".yaml", ".yml", ".toml", ".lua", ".sh", ".txt", ".tpl", ".json"}
    return [REPO / name for name in listed.splitlines()
            if Path(name).suffix in suffixes and not name.startswith("tests/test_docs.py")]


def test_nothing_cites_a_document_outside_the_repository() -> None:
    hits = []
    for path in _tracked_text_files():
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for match in REPO_PATH.finditer(doc.read_text(encoding="utf-8")):
        name = match.group(1).split("#", 1)[0].rstrip("/.")
        if "<" in name or "*" in name:
            continue  # a pattern, not a path
        if not (REPO / name).exists():
            missing.append(name)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_readme_layout_names_every_package() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    packages = sorted(p.parent.name for p in (REPO / "toolbag").glob("*/__init__.py"))
    modules = sorted(p.name for p in (REPO / "toolbag").glob("*.py") if p.name != "__init__.py")
    absent = [name for name in packages if f"{name}/" not in layout] + [m for m in modules if m not in layout]
    assert not absent, f"README Layout leaves out {absent}"


def test_operating_md_the_sdks_and_their_http_clients_log_at_warning() -> None:
    """docs/operating.md, Logs: at the default level INFO, "Celery, kombu, httpx and the vendor SDKs log at WARNING".
    A call through each vendor's SDK writes no line of theirs (the SDKs' HTTP client, httpx2, logs every request at
    INFO unless it is quieted)."""
    from tests.fleet import fleet_config_dict
    from toolbag.attempt.request import build_request
    from toolbag.config import parse_config
    from toolbag.providers.registry import build_adapter
    from toolbag.simulator.server import SimulatorServer
    from toolbag.telemetry import logs

    stream = io.StringIO()
    root, own = logging.getLogger(), logging.getLogger("toolbag")
    saved = (root.level, own.level)
    handler = logs.configure("worker:test", "INFO", stream=stream, environ={})
    try:
        with SimulatorServer() as sim:
            config = parse_config(fleet_config_dict(sim.url))
            for provider in ("anthropic", "openai", "gemini"):
                name = next(n for n, m in config.models.items() if m.provider == provider)
                request = build_request(config, capability="summarize", tier="standard", model=name,
                                        job_input={"text": "a short text"})
                adapter = build_adapter(provider, config)
                try:
                    adapter.call(config.models[name].model_id, request)
                finally:
                    adapter.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        own.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    foreign = [f"{x['logger']}: {x['msg'][:80]}" for x in lines if not x["logger"].startswith("toolbag")]
    assert not foreign, "third-party loggers wrote at INFO:\n" + "\n".join(foreign)
