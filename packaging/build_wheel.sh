#!/usr/bin/env bash
# Build the studyapp wheel that participants and researchers install (see packaging/README.md).
#
#   packaging/build_wheel.sh [OUT_DIR]        # default OUT_DIR: dist/
#
# The wheel is built from a clean copy of the committed tree (git archive HEAD), so uncommitted edits
# and a stale build/ folder never end up in what participants install. Set STUDYAPP_BUILD_WORKTREE=1 to
# build from the working tree instead (for trying a change before committing it).
# Uses the Python on PATH (or $PYTHON); pip fetches the build backend pyproject.toml asks for.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
PYTHON="${PYTHON:-python3}"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

if [[ "${STUDYAPP_BUILD_WORKTREE:-0}" == "1" ]] || ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    echo "building from the working tree $ROOT"
    for part in pyproject.toml README.md studyapp migrations; do
        cp -r "$ROOT/$part" "$STAGE/"
    done
    find "$STAGE" -name __pycache__ -type d -prune -exec rm -rf {} +
else
    if [[ -n "$(git -C "$ROOT" status --porcelain -- pyproject.toml README.md studyapp migrations)" ]]; then
        echo "note: uncommitted changes in studyapp/, migrations/ or pyproject.toml are not in this wheel" >&2
    fi
    echo "building from commit $(git -C "$ROOT" rev-parse --short HEAD)"
    git -C "$ROOT" archive --format=tar HEAD pyproject.toml README.md studyapp migrations | tar -x -C "$STAGE"
fi

"$PYTHON" -m pip wheel "$STAGE" --no-deps --quiet -w "$OUT"

WHEEL="$(ls -t "$OUT"/studyapp-*.whl | head -n 1)"
"$PYTHON" - "$WHEEL" <<'EOF'
import hashlib
import sys
import zipfile
from pathlib import Path

wheel = Path(sys.argv[1])
names = zipfile.ZipFile(wheel).namelist()
# The installed copy migrates its own database: refuse to hand out a wheel without the migrations.
for required in ("studyapp/migrations/client.py", "studyapp/migrations/server.py", "studyapp/study/builtin.toml"):
    if required not in names:
        sys.exit(f"error: {wheel.name} lacks {required}; check [tool.setuptools] in pyproject.toml")
print(f"{wheel}  ({len(names)} files, sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()})")
EOF
