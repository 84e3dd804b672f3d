"""Agent configuration as code: check it, lock it, review its drift (``toolbag check | lock | diff``).

- :mod:`~toolbag.governance.check` — ``toolbag.yaml``, routes against the skills' needs, skills (the Agent
  Skills reference validator and toolbag's own), tools and the policy; every problem names the file, the
  place and the fix;
- :mod:`~toolbag.governance.wire` — per skill, the digest of exactly what each vendor kind receives;
- :mod:`~toolbag.governance.matrix` — the effective permission matrix (agent × model × tool), decided by the
  gateway's own policy evaluation;
- :mod:`~toolbag.governance.lockfile` — ``toolbag.lock``: building it, its stable text, reading it from git;
- :mod:`~toolbag.governance.drift` — two locks compared, in sentences a reviewer can read;
- :mod:`~toolbag.governance.cli` — the three commands.
"""

from toolbag.governance.check import CheckReport, Loaded, Sources, check_tree
from toolbag.governance.drift import Change, diff_locks
from toolbag.governance.lockfile import (
    LOCK_FILE,
    LockError,
    build_lock,
    dump_lock,
    load_lock,
    lock_at_revision,
    read_lock,
)
from toolbag.governance.matrix import Level, permission_matrix

__all__ = [
    "LOCK_FILE",
    "Change",
    "CheckReport",
    "Level",
    "Loaded",
    "LockError",
    "Sources",
    "build_lock",
    "check_tree",
    "diff_locks",
    "dump_lock",
    "load_lock",
    "lock_at_revision",
    "permission_matrix",
    "read_lock",
]
