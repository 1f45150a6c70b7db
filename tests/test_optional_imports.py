"""The text task's libraries (the samat[text] extra) load only when a text command or test runs: the command line,
the theory, every library package and the image commands' modules import none of them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

TEXT_LIBRARIES = ("transformers", "textattack", "datasets", "flair", "nltk", "huggingface_hub")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {TEXT_LIBRARIES!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_package_imports_the_text_libraries():
    modules = ["samat.cli.main", "samat.core", "samat.theory", "samat.gaussian_study", "samat.empirical",
               "samat.empirical.data", "samat.empirical.models", "samat.empirical.training.loop",
               "samat.empirical.evaluation.run", "samat.empirical.experiments.report.tables",
               "samat.empirical.experiments.plan", "samat.empirical.attacks.text.recipes",
               "samat.empirical.attacks.text.standins", "samat.empirical.evaluation.text"]
    assert _loaded_after("\n".join(f"import {m}" for m in modules)) == []


def test_samat_theory_loads_neither_them_nor_torch():
    code = ("from samat.cli.main import main\nmain(['theory', 'solve', '--p', '0.8', '--eta', '0.5', '--n', '4', "
            "'--eps', '0.1', '--json'])\nimport sys\nassert 'torch' not in sys.modules")
    assert _loaded_after(code) == []
