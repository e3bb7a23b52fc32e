"""The device package stays light: importing it (and its modules) loads no desk-only library."""

from __future__ import annotations

import subprocess
import sys

DESK_ONLY = ["scipy", "tensorflow", "keras", "librosa", "python_speech_features", "pandas", "sklearn", "torch", "audiomentations"]


def test_edge_modules_import_no_desk_library():
    code = (
        "import sys, pkgutil, importlib, edge\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    if m.name not in ('edge.__main__',):\n"
        "        importlib.import_module(m.name)\n"
        f"bad = [m for m in {DESK_ONLY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"edge imported desk-only libraries: {out.stdout.strip()}"


def test_importing_edge_does_no_work():
    code = "import sys, edge; print(sorted(m for m in ('numpy', 'soundfile', 'ai_edge_litert', 'paho', 'flask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_settings_and_the_small_service_modules_import_only_the_standard_library():
    """Reading and checking a configuration, the page's token rules, the stop flag and sd_notify load no third-party library."""
    modules = ("edge.settings", "edge.checks", "edge.web.access", "edge.signals", "edge.service.sd_notify")
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "print(sorted(m for m in ('numpy', 'soundfile', 'paho', 'flask', 'werkzeug', 'gpiozero', 'pyaudio', 'sounddevice') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
