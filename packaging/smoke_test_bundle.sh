#!/usr/bin/env bash
# Smoke-test a built bundle of the participant app as a new participant would first use it
# (packaging/README.md, 5): it runs without any Python of the machine's, migrates a new database, and the
# embedded model answers one chat turn.
#
#   packaging/smoke_test_bundle.sh BUNDLE_DIR      # the folder holding the `studyapp` executable
#
# Exits non-zero, naming the failed step, if any step fails.
set -euo pipefail

BUNDLE="$(cd "${1:?usage: smoke_test_bundle.sh BUNDLE_DIR}" && pwd)"
EXE="$BUNDLE/studyapp"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
[ -x "$EXE" ] || { echo "smoke test: $EXE is not an executable bundle" >&2; exit 1; }

step() { echo "smoke test: $*" >&2; }
# No site-packages and no project on the path: everything must come from the bundle.
run() { env -u PYTHONPATH -u VIRTUAL_ENV PATH=/usr/bin:/bin HOME="$WORK/home" "$EXE" "$@"; }
mkdir -p "$WORK/home"

step "--version"
run --version | tee "$WORK/version.txt"
grep -Eq "^studyapp, version [0-9]" "$WORK/version.txt" || { step "FAILED: --version"; exit 1; }

step "doctor --full on a fresh data dir"
run doctor --full --data-dir "$WORK/data" | tee "$WORK/doctor.txt" || true
grep -q "^schema version:  m" "$WORK/doctor.txt" || { step "FAILED: doctor did not migrate a new database"; exit 1; }
grep -q "^model answers:   yes" "$WORK/doctor.txt" || { step "FAILED: doctor: the embedded model did not answer"; exit 1; }

step "one chat turn on the embedded model"
run --model local ask --data-dir "$WORK/data" "Name one fruit." | tee "$WORK/reply.txt"
[ -n "$(tr -d '[:space:]' < "$WORK/reply.txt")" ] || { step "FAILED: the chat turn's reply is empty"; exit 1; }
run export-mine --data-dir "$WORK/data" --out - > "$WORK/mine.json"
grep -q '"content": "Name one fruit."' "$WORK/mine.json" || { step "FAILED: the turn was not stored"; exit 1; }

step "passed"
