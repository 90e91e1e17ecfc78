#!/usr/bin/env bash
# Run the GA4GH TES compliance suite (elixir-cloud-aai/openapi-test-runner)
# against a running TES server.  LOCAL / MANUAL CHECK ONLY: CI cannot reach
# GitHub, so the suite source has to already be on the machine (see
# docs/compliance.md).  Nothing from the suite is vendored into this repo.
#
# Usage:
#   scripts/compliance.sh URL [extra openapi-test-runner args...]
#
#   URL  the TES base URL. Any of these forms works:
#          http://127.0.0.1:8000                 -> http://127.0.0.1:8000/ga4gh/tes/
#          http://127.0.0.1:8000/ga4gh/tes       -> http://127.0.0.1:8000/ga4gh/tes/
#          http://127.0.0.1:8000/ga4gh/tes/v1/   -> http://127.0.0.1:8000/ga4gh/tes/
#        (the suite itself builds every request as SERVER + "v1" + endpoint,
#        so SERVER must end in a slash and must not contain the /v1 part).
#   extra args are passed to `openapi-test-runner report`, e.g.
#        --include-tags schema_validation_only   (skip the polling/functional tests)
#
# Environment knobs (all optional):
#   COMPLIANCE_VENV          venv for the suite's pinned deps   [/work/venv-compliance]
#   COMPLIANCE_SUITE_DIR     unpacked suite source              [/tmp/openapi-test-runner]
#   COMPLIANCE_MIRROR        bare git mirror to extract from    [/work/.mirror/elixir-cloud-aai+openapi-test-runner/repo]
#   COMPLIANCE_REF           commit to extract from the mirror  [552ff3c2..., dev as of 2024-03-05]
#   COMPLIANCE_OUT           logs + JSON reports go here        [/tmp/tesp-compliance]
#   COMPLIANCE_MODE          per-file (default) | single
#                              per-file: one suite process per tests/*.yml, so an
#                              uncaught exception in one test (the suite has a few,
#                              see docs) cannot abort the remaining tests.
#                              single: exactly the upstream invocation, one process.
#   COMPLIANCE_TESTS         space-separated test names to run, e.g.
#                              "service_info create_task get_task_full"   [all]
#   COMPLIANCE_TEST_TIMEOUT  wall-clock seconds per suite process, 0 = none [0]
#                              (upstream polling tests wait up to 3600 s each)
#
# Exit status: 0 all selected tests passed (or were skipped by tag/version),
#              1 at least one test failed or crashed, 2 setup problem.
set -euo pipefail

die() { echo "compliance.sh: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $0 URL [extra openapi-test-runner args...]"
RAW_URL=$1; shift
EXTRA_ARGS=("$@")

VENV=${COMPLIANCE_VENV:-/work/venv-compliance}
SUITE=${COMPLIANCE_SUITE_DIR:-/tmp/openapi-test-runner}
MIRROR=${COMPLIANCE_MIRROR:-/work/.mirror/elixir-cloud-aai+openapi-test-runner/repo}
REF=${COMPLIANCE_REF:-552ff3c20c8bcc79a1bedb4ade1821065f8fca9e}
OUT=${COMPLIANCE_OUT:-/tmp/tesp-compliance}
MODE=${COMPLIANCE_MODE:-per-file}
TESTS=${COMPLIANCE_TESTS:-}
TEST_TIMEOUT=${COMPLIANCE_TEST_TIMEOUT:-0}
TES_VERSION=1.1.0

# --- 1. suite source -------------------------------------------------------
if [ ! -f "$SUITE/compliance_suite/cli.py" ]; then
  if git --git-dir="$MIRROR" rev-parse --verify -q "$REF^{commit}" >/dev/null 2>&1; then
    echo "compliance.sh: extracting suite $REF from $MIRROR into $SUITE" >&2
    rm -rf "$SUITE"; mkdir -p "$SUITE"
    git --git-dir="$MIRROR" archive "$REF" | tar -x -C "$SUITE"
    echo "$REF" > "$SUITE/.suite-commit"
  else
    die "suite source not found.
  Looked for an unpacked copy in $SUITE and a git mirror at $MIRROR (ref $REF).
  CI has no GitHub access, so this is a manual check. Get the source onto the
  machine first, e.g. on a machine with GitHub access:
    git clone https://github.com/elixir-cloud-aai/openapi-test-runner $SUITE
    git -C $SUITE checkout $REF
  or point COMPLIANCE_SUITE_DIR / COMPLIANCE_MIRROR at an existing copy."
  fi
fi
SUITE_COMMIT=$(cat "$SUITE/.suite-commit" 2>/dev/null || git -C "$SUITE" rev-parse HEAD 2>/dev/null || echo unknown)

# --- 2. venv with the suite's pinned runtime deps (from PyPI) --------------
[ -f "$SUITE/requirements.txt" ] || die "$SUITE/requirements.txt missing"
REQS="$OUT/requirements-runtime.txt"
mkdir -p "$OUT"
# The suite's requirements.txt also pins its own dev tools; they are not needed to run it.
grep -v -i -E '^(coverage|flake8|pytest)([=<>~ ]|$)' "$SUITE/requirements.txt" | sed '/^[[:space:]]*$/d' > "$REQS"
if [ ! -x "$VENV/bin/python" ]; then
  echo "compliance.sh: creating venv $VENV" >&2
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
fi
STAMP="$VENV/.tesp-compliance-reqs"
if ! cmp -s "$REQS" "$STAMP"; then
  echo "compliance.sh: installing suite deps into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" || die "pip install failed"
  cp "$REQS" "$STAMP"
fi

# --- 3. normalise the server URL -------------------------------------------
URL=${RAW_URL%/}
URL=${URL%/v1}
URL=${URL%/}
case "$URL" in
  http://*|https://*) ;;
  *) die "URL must start with http:// or https:// (got: $RAW_URL)" ;;
esac
HOSTPART=${URL#*://}
if [[ "$HOSTPART" != */* ]]; then
  URL="$URL/ga4gh/tes"   # bare host:port -> standard TES base path
fi
SERVER="$URL/"

# --- 4. run -----------------------------------------------------------------
cd "$SUITE"   # the suite resolves tests/, templates/ and docs/test_config/ relative to CWD
run_suite() {  # $1 = log file, $2 = report dir, rest = --test-path args
  local log=$1 rep=$2; shift 2
  mkdir -p "$rep"
  local cmd=("$VENV/bin/python" -m compliance_suite.cli report
             --server "$SERVER" --version "$TES_VERSION" --output_path "$rep" "$@")
  if [ ${#EXTRA_ARGS[@]} -gt 0 ]; then cmd+=("${EXTRA_ARGS[@]}"); fi
  local rc=0
  if [ "$TEST_TIMEOUT" != 0 ]; then
    timeout "$TEST_TIMEOUT" "${cmd[@]}" >"$log.raw" 2>&1 || rc=$?
  else
    "${cmd[@]}" >"$log.raw" 2>&1 || rc=$?
  fi
  sed 's/\x1b\[[0-9;]*m//g' "$log.raw" > "$log"; rm -f "$log.raw"
  return $rc
}
count() {  # $1 = log, $2 = Passed|Failed|Skipped
  sed -n "s/^#[[:space:]]*$2 - \([0-9]*\) .*/\1/p" "$1" | tail -1
}

echo "compliance.sh: suite $SUITE_COMMIT"
echo "compliance.sh: server $SERVER  (requests go to ${SERVER}v1/...)  version $TES_VERSION  mode $MODE"
echo "compliance.sh: logs in $OUT"

if [ -n "$TESTS" ]; then
  FILES=()
  for t in $TESTS; do
    t=${t%.yml}; t=${t#tests/}
    [ -f "tests/$t.yml" ] || die "no such test: tests/$t.yml"
    FILES+=("tests/$t.yml")
  done
else
  mapfile -t FILES < <(ls tests/*.yml | sort)
fi

if [ "$MODE" = single ]; then
  LOG="$OUT/suite.log"; rc=0
  TP=(); for f in "${FILES[@]}"; do TP+=(--test-path "$f"); done
  run_suite "$LOG" "$OUT/report" "${TP[@]}" || rc=$?
  sed -n '/Compliance Testing Summary/,/^#\{120\}$/p' "$LOG"
  grep -E 'Initiating Test-|Compliance Test-[0-9]+ .* (successful|failed)|^Exception Name' "$LOG" || true
  P=$(count "$LOG" Passed); F=$(count "$LOG" Failed); S=$(count "$LOG" Skipped)
  if [ -z "$P" ]; then
    echo "compliance.sh: the suite CRASHED (exit $rc) before printing its summary; tail of $LOG:"
    tail -5 "$LOG"
    echo "compliance: 0 passed, ${#FILES[@]} failed"
    exit 1
  fi
  echo "compliance: $P passed, $F failed, $S skipped"
  [ "$F" = 0 ] && exit 0 || exit 1
fi

[ "$MODE" = per-file ] || die "COMPLIANCE_MODE must be per-file or single"
NP=0; NF=0; NS=0; FAILED=()
printf '%-48s %s\n' TEST RESULT
for f in "${FILES[@]}"; do
  name=$(basename "$f" .yml)
  LOG="$OUT/$name.log"; rc=0
  run_suite "$LOG" "$OUT/report-$name" --test-path "$f" || rc=$?
  P=$(count "$LOG" Passed); F=$(count "$LOG" Failed); S=$(count "$LOG" Skipped)
  if [ -z "$P" ]; then
    if [ "$rc" = 124 ]; then why="TIMEOUT after ${TEST_TIMEOUT}s"; else why="CRASHED (exit $rc): $(grep -v '^[[:space:]]*$' "$LOG" | tail -1)"; fi
    printf '%-48s %s\n' "$name" "$why"; NF=$((NF+1)); FAILED+=("$name")
  elif [ "$F" != 0 ]; then
    why=$(grep -A1 -E 'Compliance Test-[0-9]+ .* failed\.' "$LOG" | grep -E '^Exception Name' | head -1 |
          sed -E 's/^Exception Name - (.*)\. Type - [A-Za-z]+\. Message - (.*)\. Details - (.*)$/\1: \2 [\3]/' | cut -c1-200)
    printf '%-48s FAIL  %s\n' "$name" "$why"; NF=$((NF+1)); FAILED+=("$name")
  elif [ "$S" != 0 ]; then
    printf '%-48s skip  (version/tag filter)\n' "$name"; NS=$((NS+1))
  else
    printf '%-48s PASS\n' "$name"; NP=$((NP+1))
  fi
done
[ ${#FAILED[@]} -eq 0 ] || echo "compliance.sh: failing: ${FAILED[*]}  (details: $OUT/<test>.log)"
echo "compliance: $NP passed, $NF failed, $NS skipped"
[ "$NF" = 0 ]
