#!/usr/bin/env bash
# Build the PyInstaller bundle of the participant app for this platform (see packaging/README.md, 5).
#
#   packaging/build_bundle.sh [OUT_DIR]       # default OUT_DIR: dist/
#
# Builds the wheel (build_wheel.sh), installs it with [local] and PyInstaller into a fresh virtualenv,
# freezes packaging/pyinstaller/studyapp.spec, smoke-tests the bundle (smoke_test_bundle.sh: --version, doctor
# on a fresh data dir, one chat turn on the embedded model), and writes OUT_DIR/studyapp-<version>-<platform>.tar.gz.
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

# The bundle must start, migrate a new database and answer a chat turn on the embedded model by itself.
"$ROOT/packaging/smoke_test_bundle.sh" "$WORK/dist/studyapp"

VERSION="$("$WORK/env/bin/python" -c 'from importlib.metadata import version; print(version("studyapp"))')"
PLATFORM="$("$WORK/env/bin/python" -c 'import sysconfig; print(sysconfig.get_platform())')"
ARCHIVE="$OUT/studyapp-$VERSION-$PLATFORM.tar.gz"
tar -C "$WORK/dist" -czf "$ARCHIVE" studyapp
echo "$ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
