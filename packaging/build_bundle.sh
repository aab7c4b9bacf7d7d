#!/usr/bin/env bash
# Build the PyInstaller bundle of the participant app for this platform (see packaging/README.md, 5).
#
#   packaging/build_bundle.sh [OUT_DIR]       # default OUT_DIR: dist/
#
# Builds the wheel (build_wheel.sh), installs it with [local] and PyInstaller into a fresh virtualenv,
# freezes packaging/pyinstaller/studyapp.spec, checks that the bundle opens a database and that the
# embedded model answers, and writes OUT_DIR/studyapp-<version>-<platform>.tar.gz.
# Uses $PYTHON (default python3, 3.11 or newer). For a bundle that runs on other CPUs than this one,
# install a llama-cpp-python built with CMAKE_ARGS="-DGGML_NATIVE=OFF" first, or point PIP_FIND_LINKS
# at a wheelhouse that has one (README, 4).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

PYTHON="$PYTHON" "$ROOT/packaging/build_wheel.sh" "$WORK/wheel"
WHEEL="$(ls "$WORK"/wheel/studyapp-*.whl)"

"$PYTHON" -m venv "$WORK/env"
"$WORK/env/bin/python" -m pip install --quiet "$WHEEL[local]" 'pyinstaller>=6.10,<7'
"$WORK/env/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$WORK/dist" --workpath "$WORK/build" \
    "$ROOT/packaging/pyinstaller/studyapp.spec"

# The bundle must migrate a new database and run the embedded model without any site-packages.
env -u PYTHONPATH "$WORK/dist/studyapp/studyapp" doctor --data-dir "$WORK/data" | tee "$WORK/doctor.txt"
grep -q "^schema version:  m" "$WORK/doctor.txt"
grep -q "^model answers:   yes" "$WORK/doctor.txt"

VERSION="$("$WORK/env/bin/python" -c 'from importlib.metadata import version; print(version("studyapp"))')"
PLATFORM="$("$WORK/env/bin/python" -c 'import sysconfig; print(sysconfig.get_platform())')"
ARCHIVE="$OUT/studyapp-$VERSION-$PLATFORM.tar.gz"
tar -C "$WORK/dist" -czf "$ARCHIVE" studyapp
echo "$ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
