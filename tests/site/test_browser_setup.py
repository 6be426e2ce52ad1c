"""Without Chromium, the browser tests skip with one line saying how to install it; in CI they fail.

Runs pytest on tests/site/test_browser.py in a child process whose CHROMIUM points at no file. The
file's check runs before any session fixture, so neither run builds the site.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_browser_tests_without_chromium(tmp_path: Path, ci: str | None, *select: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["CHROMIUM"] = str(tmp_path / "no-chromium-here")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "tests/site/test_browser.py",
         *select],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_missing_chromium_skips_with_one_line(tmp_path, ci):
    proc = run_browser_tests_without_chromium(tmp_path, ci)
    assert proc.returncode in (0, 5), proc.stdout[-3000:]   # 5: pytest's code for "nothing ran" in a lone file
    install_lines = [line for line in proc.stdout.splitlines() if "apt-get install chromium" in line]
    assert len(install_lines) == 1, proc.stdout[-3000:]
    assert install_lines[0].startswith("SKIPPED [1] tests/site/test_browser.py"), install_lines
    assert "1 skipped" in proc.stdout


def test_in_ci_a_missing_chromium_fails(tmp_path):
    proc = run_browser_tests_without_chromium(tmp_path, "true", "-k", "test_math_and_diagrams_render")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "Chromium is missing" in proc.stdout and "1 error" in proc.stdout, proc.stdout[-3000:]
