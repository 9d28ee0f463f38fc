"""docs/cli-reference.md is the ``--help`` of every command as the code prints it now.

The reference is regenerated in memory by ``tools/gen_cli_reference.py --stdout`` (run as a script, in a
child process) and compared with the file in the repository.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_cli_reference.py"), "--stdout"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "## edgecv quantize" in proc.stdout and "--precision" in proc.stdout
    current = (ROOT / "docs" / "cli-reference.md").read_text(encoding="utf-8")
    assert current == proc.stdout, "docs/cli-reference.md is out of date: run python tools/gen_cli_reference.py"
