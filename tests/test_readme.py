"""The README shows what the commands print: the demo's table is `make demo`'s output, byte for byte."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_the_readme_demo_block_is_what_make_demo_prints():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"`make demo` prints one line per clip.*?\n```\n(.*?)```\n", readme, flags=re.S)
    assert len(blocks) == 1, "README.md: the demo's output block after '`make demo` prints one line per clip' is missing"
    # What `make demo` runs (Makefile), in the venv running this test.
    out = subprocess.run([sys.executable, "-m", "edge", "classify", "samples/"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = out.stderr.strip().splitlines()[-1]  # "3 files, 0 failed, 0.4 s" on stderr: the terminal shows it after the table
    shown = out.stdout + summary + "\n"
    seconds = re.compile(r"\d+\.\d s$", flags=re.M)  # the one figure that differs from run to run
    assert seconds.sub("S", blocks[0]) == seconds.sub("S", shown), (
        "README.md's demo block differs from `make demo`'s output (after a new model?): paste the output in"
    )


def test_the_makefile_demo_runs_that_command():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: .*\n\t\$\(EDGE_PY\) -m edge classify samples/\n", makefile, flags=re.M)
