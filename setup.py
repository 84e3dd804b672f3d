"""Build step: the starter library (``skills/``, ``policy.yaml``, ``tools.yaml`` at the repository root) is
copied into the package as ``toolbag/starter/``, so an installed wheel finds it from any directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
STARTER = ("skills", "policy.yaml", "tools.yaml")


class BuildPyWithStarter(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "toolbag" / "starter"
        for name in STARTER:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithStarter})
