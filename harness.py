#!/usr/bin/env python3
"""crlab's command line.  On first use it makes its own virtualenv (.venv) with the Python
dependencies from pyproject.toml, then runs inside it; Debian packages are handled by crlab itself
(`harness.py doctor`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".crlab-deps"


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["test"])


def _bootstrap() -> None:
    """Make sure .venv exists with the current requirements, and re-run this script inside it."""
    requirements = _requirements()
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    python = VENV / "bin" / "python"
    if not (python.exists() and STAMP.exists() and STAMP.read_text().strip() == digest):
        print(f"crlab: setting up {VENV} (Python dependencies)", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
            if os.geteuid() == 0:  # Debian splits venv out of python3
                subprocess.run(["apt-get", "install", "-y", "-q", "python3-venv"], check=False)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                       check=True)
        STAMP.write_text(digest + "\n")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    if Path(sys.prefix).resolve() != VENV.resolve() and not os.environ.get("CRLAB_NO_VENV"):
        _bootstrap()
    sys.path.insert(0, str(ROOT))
    from crlab.cli import main

    sys.exit(main())
