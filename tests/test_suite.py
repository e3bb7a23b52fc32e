"""The suite's own split: committed tiny models equal fresh builds, the desk lists name real tests,
and a device-only install really holds no desk library."""

from __future__ import annotations

import ast
import importlib.util
import json

import pytest
from conftest import DESK_TESTS, HAVE_DESK, ROOT
from tiny_model import COMMITTED, MODELS_DIR, build_committed, copy_committed

# What the desk adds; none of it may reach a device-only install through the device's dependencies.
DESK_LIBRARIES = ("tensorflow", "keras", "scipy", "librosa", "python_speech_features", "audiomentations", "matplotlib")


@pytest.mark.desk
def test_committed_tiny_models_are_what_tiny_model_py_builds(tmp_path):
    rebuild = "rebuild them with `.venv/bin/python tests/tiny_model.py --committed` and commit tests/models/"
    built = build_committed(tmp_path)
    assert sorted(p.stem for p in built) == sorted(COMMITTED) == sorted(p.stem for p in MODELS_DIR.glob("*.tflite"))
    for path in built:
        for suffix in (".tflite", ".json"):
            fresh, committed = path.with_suffix(suffix), MODELS_DIR / f"{path.stem}{suffix}"
            assert fresh.read_bytes() == committed.read_bytes(), (
                f"tests/models/{committed.name} is not what tests/tiny_model.py builds; {rebuild}"
            )


@pytest.mark.desk
def test_a_copied_build_under_another_name_is_what_building_that_name_writes(tmp_path):
    from tiny_model import _build

    labels, seed = COMMITTED["tiny_four"]
    fresh = _build(tmp_path / "fresh", "renamed", labels, seed)
    copied = copy_committed(tmp_path / "copied", "renamed", labels, seed)
    assert copied.read_bytes() == fresh.read_bytes()
    assert json.loads(copied.with_suffix(".json").read_text()) == json.loads(fresh.with_suffix(".json").read_text())


def test_every_committed_model_loads_on_this_install(tmp_path):
    from edge.model import Model

    for stem, (labels, seed) in COMMITTED.items():
        model = Model(copy_committed(tmp_path, stem, labels, seed))
        assert model.labels == labels


def test_without_a_committed_build_a_device_install_skips_instead_of_failing(tmp_path):
    if HAVE_DESK:
        pytest.skip("checks the device-only path of build_tiny_model; this install has TensorFlow and builds")
    from tiny_model import build_tiny_model

    with pytest.raises(pytest.skip.Exception, match="needs TensorFlow"):
        build_tiny_model(tmp_path, labels=("a", "b"))


def test_the_desk_lists_name_tests_that_exist():
    for module, names in DESK_TESTS.items():
        tree = ast.parse((ROOT / "tests" / module).read_text(encoding="utf-8"))
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        missing = sorted(set(names) - defined)
        assert not missing, f"tests/conftest.py DESK_TESTS names tests that tests/{module} no longer has: {missing}"


@pytest.mark.skipif(HAVE_DESK, reason="checks a device-only install; this one is the desk")
def test_a_device_only_install_holds_no_desk_library():
    present = [name for name in DESK_LIBRARIES if importlib.util.find_spec(name) is not None]
    assert present == [], f"the device-only venv holds desk libraries {present}: a device dependency pulled them in"
