"""Packaging: pyproject.toml is the one source of dependencies and version, the wheel holds the device
package and the model's licence, installs in a clean venv and classifies, on every Python it supports.

These are desk tests (tests/conftest.py): they build with `build` and reach the package index.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import ROOT, find_python

from edge import __version__

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = PYPROJECT["optional-dependencies"]
DEVICE_EXTRAS = ("mic", "mqtt", "gpio", "web", "webrtc")
SAMPLES = sorted((ROOT / "samples").glob("*.flac"))
# The Pythons the README promises; the oldest is the one `make` and CI use (Debian 12's 3.11).
SUPPORTED = ("3.11", "3.12", "3.13")
ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def requirements(name: str) -> list[str]:
    """The requirements a file lists, following -r includes, without comments."""
    found = []
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += requirements(line[3:].strip())
        elif line:
            found.append(line)
    return found


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        ("requirements-edge.txt", DEVICE_EXTRAS),
        ("requirements-train.txt", (*DEVICE_EXTRAS, "train")),
        ("requirements-dev.txt", (*DEVICE_EXTRAS, "train", "test", "dev")),
    ],
)
def test_requirements_files_list_exactly_what_pyproject_declares(name, groups):
    declared = PYPROJECT["dependencies"] + [r for group in groups for r in EXTRAS[group]]
    listed = requirements(name)
    assert sorted(listed) == sorted(declared), f"{name} differs from pyproject.toml's dependencies and extras {list(groups)}: edit both"
    assert len(set(listed)) == len(listed)


def test_every_library_edge_imports_is_declared():
    """A new import in edge/ without its package in pyproject.toml breaks `make demo` on a fresh machine."""
    import ast
    from importlib.metadata import packages_distributions

    imported = set()
    for path in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = sorted(imported - set(sys.stdlib_module_names) - {"edge", "__future__"})
    declared = {re.split(r"[<>=!~;\[ ]", r)[0].lower() for r in PYPROJECT["dependencies"] + [r for g in EXTRAS.values() for r in g]}
    through = {"werkzeug": "flask"}  # imported from the declared package that brings it
    distributions = packages_distributions()
    undeclared = [
        m for m in third_party if through.get(m) not in declared and not {d.lower() for d in distributions.get(m, [m])} & declared
    ]
    assert not undeclared, f"edge/ imports {undeclared}, which pyproject.toml does not declare: add them to dependencies or an extra"


def test_the_version_is_written_once():
    assert "version" not in PYPROJECT and "version" in PYPROJECT["dynamic"]
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "edge.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_python_310_is_refused_in_pyproject_and_the_makefile():
    assert PYPROJECT["requires-python"] == ">=3.11"
    assert (
        "sys.version_info < (3, 11)" in (ROOT / "Makefile").read_text()
        and "sys.version_info < (3, 11)" in (ROOT / "edge/__main__.py").read_text()
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`python -m build` of this checkout: an sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("*.whl")
    print(f"\nwheel {built.name}: {built.stat().st_size / 1e3:.0f} KB")
    return built


def test_the_wheel_holds_the_device_package_its_model_and_the_models_licence(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"ser_edge-{__version__}.dist-info"
    assert {n.split("/")[0] for n in names} == {"edge", dist_info}  # no bare training/, convert/, tests/
    for shipped in (
        "edge/models/ser_cnn_int8.tflite",
        "edge/models/ser_cnn_int8.json",
        "edge/models/MODEL_CARD.md",
        "edge/models/LICENCE.md",
    ):
        assert shipped in names
    assert any(n.startswith("edge/web/") and n.endswith(".js") for n in names)
    for licence in ("LICENSE", "edge/models/LICENCE.md", "edge/models/MODEL_CARD.md"):
        assert f"{dist_info}/licenses/{licence}" in names
    meta = email.parser.Parser().parsestr(zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode())
    assert (meta["Name"], meta["Version"], meta["Requires-Python"]) == ("ser-edge", __version__, ">=3.11")
    assert "non-commercial" in meta["License-Expression"]
    assert set(meta.get_all("Provides-Extra")) >= {"mic", "mqtt", "gpio", "web", "train"}
    requires = meta.get_all("Requires-Dist")
    from packaging.requirements import Requirement

    def same(reqs):  # wheel metadata writes a requirement's specifiers in its own order
        return [str(Requirement(r)) for r in reqs]

    assert same(r for r in requires if "extra ==" not in r) == same(PYPROJECT["dependencies"])
    assert "non-commercial use only" in (ROOT / "edge/models/LICENCE.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("version", SUPPORTED)
def test_the_wheel_installs_in_a_clean_venv_and_classifies(wheel, version, tmp_path):
    python = find_python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "--quiet", "--only-binary=:all:", str(wheel)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    run = {"capture_output": True, "text": True, "cwd": tmp_path, "env": ENV, "timeout": 300}  # not the checkout: only the wheel's code
    version_out = subprocess.run([venv / "bin/ser-edge", "--version"], **run)
    assert version_out.stdout.strip() == f"ser-edge {__version__}"
    out = subprocess.run([venv / "bin/ser-edge", "classify", "--json", *map(str, SAMPLES)], **run)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    labels = json.loads((ROOT / "edge/models/ser_cnn_int8.json").read_text())["labels"]
    assert [r["path"] for r in results] == list(map(str, SAMPLES)) and all(r["label"] in labels for r in results)
    where = subprocess.run(
        [venv / "bin/python", "-c", "import edge, importlib.util as u; print(edge.__file__, u.find_spec('training'))"], **run
    )
    package, training = where.stdout.split()
    assert package.startswith(str(venv)) and training == "None"


def test_python_310_cannot_install_the_wheel(wheel, tmp_path):
    python = find_python("3.10")
    if python is None:
        pytest.skip("Python 3.10 is not installed on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "--no-deps", str(wheel)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert pip.returncode != 0 and "requires a different Python" in pip.stderr
    # And from a checkout, `python -m edge` says what to use instead of dying on `import tomllib`.
    out = subprocess.run([python, "-m", "edge", "classify", str(SAMPLES[0])], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("ser-edge needs Python 3.11 or newer")


def resolves(platform: str, version: str, wanted: list[str], target: Path) -> subprocess.CompletedProcess:
    """pip's resolution of ``wanted`` for another machine: wheels only, nothing downloaded but metadata."""
    glibc = [f"--platform=manylinux_2_{minor}_{platform}" for minor in (17, 24, 27, 28, 31, 34, 35, 36)]
    args = ["--dry-run", "--ignore-installed", "--only-binary=:all:", f"--python-version={version}", "--target", str(target), *glibc]
    args += [f"--platform=manylinux2014_{platform}", f"--platform=linux_{platform}", *wanted]
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True, env=ENV, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["aarch64", "x86_64"])
@pytest.mark.parametrize("version", SUPPORTED)
def test_the_device_dependencies_have_wheels_for_64_bit_debian(platform, version, tmp_path):
    proc = resolves(platform, version, PYPROJECT["dependencies"] + EXTRAS["mic"] + EXTRAS["webrtc"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_32_bit_arm_has_no_litert_wheel_so_the_readme_refuses_it(tmp_path):
    litert = next(r for r in PYPROJECT["dependencies"] if r.startswith("ai-edge-litert"))
    proc = resolves("armv7l", "3.11", [litert], tmp_path)
    assert proc.returncode != 0 and "No matching distribution found for ai-edge-litert" in proc.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "32-bit" in readme and "armv7l" in readme
