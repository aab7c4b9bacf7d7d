"""The participant bundle builds and passes its smoke test (packaging/build_bundle.sh).

It builds the wheel, installs it with the embedded model and PyInstaller into a fresh virtualenv, freezes the
app and runs packaging/smoke_test_bundle.sh on the result: ``--version``, ``doctor`` on a fresh data dir and one
chat turn on the embedded model, with no Python of the machine's on the path. Slow (minutes): pip installs the
app's dependencies into the new environment (from its cache when it has them) and PyInstaller analyses them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_bundle_builds_and_passes_its_smoke_test(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The machine's pip settings (index, cache) stay; the test environment's own paths do not.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PYTHON": sys.executable, "STUDYAPP_BUILD_WORKTREE": "1"}
    done = subprocess.run(["bash", str(ROOT / "packaging" / "build_bundle.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "smoke test: passed" in done.stderr
    [archive] = out.glob("studyapp-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "studyapp/studyapp" in names
    # The model the first run answers with travels inside the bundle.
    assert any(name.endswith(".gguf") for name in names)
