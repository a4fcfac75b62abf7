"""``mraster <command>``: one entry point for the commands the README names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mraster.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_entry_point_lists_and_runs_each_command():
    p = run()
    assert p.returncode == 0 and all(c in p.stdout for c in ("dashboard", "bot", "backtest", "optimize", "data",
                                                              "sim", "drill", "guard"))
    assert run("nope").returncode == 2
    p = run("data", "download", "--help")
    assert p.returncode == 0 and "--symbols" in p.stdout
    assert 'mraster = "mraster.cli:main"' in (ROOT / "pyproject.toml").read_text()  # the script


def _pins(path: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def _wanted(path: Path):
    from packaging.requirements import Requirement

    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith(("-r", "-c")):
            yield Requirement(line)


def test_the_set_up_commands_install_exact_versions_that_meet_the_requirements():
    """The README's two commands install from lock files: each lists every package at one
    version, meets requirements*.txt, and the test environment is the run environment plus the
    test tools (same versions)."""
    from packaging.utils import canonicalize_name

    run_lock, dev_lock = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    for req_file, lock in (("requirements.txt", run_lock), ("requirements-dev.txt", dev_lock)):
        for req in _wanted(ROOT / req_file):
            name = canonicalize_name(req.name)
            assert name in lock, f"{req.name} of {req_file} is not locked"
            assert req.specifier.contains(lock[name], prereleases=True), (req, lock[name])
    assert {k: dev_lock.get(k) for k in run_lock} == run_lock
    assert "ensure_requirements requirements.lock" in (ROOT / "scripts/run.sh").read_text()
    assert "ensure_requirements requirements-dev.lock" in (ROOT / "scripts/test.sh").read_text()


def test_the_program_imports_only_what_its_run_time_lock_installs():
    """pandas and the test tools are for the tests: nothing under mraster/ (nor the top-level
    scripts) imports a package the run environment does not have."""
    import ast
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    dists = packages_distributions()
    allowed = set(_pins(ROOT / "requirements.lock"))
    files = list((ROOT / "mraster").rglob("*.py")) + list(ROOT.glob("*.py"))
    missing = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and \
                not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("mraster", "ml_policy"):
                    continue
                if not {canonicalize_name(d) for d in dists.get(top, [top])} & allowed:
                    missing.add(f"{f.relative_to(ROOT)}: {top}")
    assert not missing, sorted(missing)
