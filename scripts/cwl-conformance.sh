#!/usr/bin/env bash
# Run the CWL v1.2 conformance suite with plain cwltool and with tesp-cwl against a real
# `tesp serve` (embedded Pulsar), in the same run, and print both pass counts.
#
#   scripts/cwl-conformance.sh /path/to/cwl-v1.2 [extra cwltest args, e.g. -j4 -n1-20]
#
# The suite (common-workflow-language/cwl-v1.2) is not vendored: point at a checkout.
# Needs cwltool and cwltest in the environment (the `cwl` extra plus `pip install cwltest`).
# Environment: PYTHON (default: python3), WORK (default: a temporary directory), ONLY
# (`cwltool` or `tesp-cwl` to run one side only).
set -euo pipefail

SUITE=${1:?usage: $0 /path/to/cwl-v1.2 [cwltest args]}
shift
SUITE=$(cd "$SUITE" && pwd)
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/tesp-cwl-conformance.XXXXXX)}
ONLY=${ONLY:-}
BIN=$(dirname "$(command -v "$PYTHON")")
mkdir -p "$WORK/bin" "$WORK/tmp"
export TMPDIR="$WORK/tmp"

# cwltest wants an executable; tesp-cwl may not be installed as a console script yet.
cat >"$WORK/bin/tesp-cwl" <<SH
#!/bin/sh
exec "$PYTHON" -m tesp_cwl "\$@"
SH
chmod +x "$WORK/bin/tesp-cwl"

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; true; }
trap cleanup EXIT

count() {  # tool label -> prints "label: N passed, M failed"
  local tool=$1 label=$2; shift 2
  local log="$WORK/$label.log"
  set +e
  (cd "$SUITE" && "$BIN/cwltest" --test conformance_tests.yaml --tool "$tool" \
      --junit-xml "$WORK/$label.xml" "${EXTRA[@]}" -- "$@") >"$log" 2>&1
  set -e
  "$PYTHON" - "$WORK/$label.xml" "$label" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.iter("testcase")
total = failed = 0
for case in cases:
    total += 1
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
skipped = sum(1 for c in root.iter("testcase") if c.find("skipped") is not None)
print(f"{sys.argv[2]}: {total - failed - skipped} passed, {failed} failed, {skipped} skipped of {total}")
PY
}

EXTRA=("$@")
if [ "$ONLY" != tesp-cwl ]; then
  count "$BIN/cwltool" cwltool
fi
if [ "$ONLY" != cwltool ]; then
  "$BIN/tesp" serve --host 127.0.0.1 --port "$PORT" --data-dir "$WORK/tesp-data" \
      --file-root "$SUITE" --file-root "$WORK" --max-in-flight 8 \
      >"$WORK/tesp-serve.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$PORT/ga4gh/tes/v1/service-info" >/dev/null && break
    sleep 0.2
  done
  count "$WORK/bin/tesp-cwl" tesp-cwl --tes "http://127.0.0.1:$PORT"
fi
echo "logs and JUnit XML in $WORK"
