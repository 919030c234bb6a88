#!/usr/bin/env bash
# The whole Glasshouse test suite, as `make test` and CI run it.
# Static checks, then the unit/integration tests on SQLite and on PostgreSQL, then the browser
# tests in Debian's Chromium. Missing PostgreSQL or Chromium is a skip with the reason on a
# developer's machine and a failure under CI=true.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export GLASSHOUSE_VAR_DIR="${GLASSHOUSE_VAR_DIR:-$PWD/var}"
mkdir -p "$GLASSHOUSE_VAR_DIR"
REPORTS="$GLASSHOUSE_VAR_DIR/test-reports"
rm -rf "$REPORTS"; mkdir -p "$REPORTS"
CI="${CI:-false}"
failed=()
skipped=()

step() { echo; echo "==> $*"; }
run() {  # run NAME CMD...: record a failure but keep going so one run shows every problem
  local name=$1; shift
  step "$name"
  if ! "$@"; then failed+=("$name"); fi
}

run "ruff check" $BIN/ruff check .
run "ruff format --check" $BIN/ruff format --check .
run "mypy --strict" $BIN/mypy .
run "makemigrations --check" $BIN/python manage.py makemigrations --check --dry-run
run "check --deploy (production settings)" env DJANGO_SETTINGS_MODULE=glasshouse.config.settings.production \
  GLASSHOUSE_SECRET_KEY="$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
  $BIN/python manage.py check --deploy --fail-level WARNING

run "tests on SQLite" $BIN/pytest glasshouse --junitxml="$REPORTS/sqlite.xml"

PG_URL="${GLASSHOUSE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
step "PostgreSQL at $PG_URL"
if $BIN/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$PG_URL" 2>"$REPORTS/pg-error.txt"; then
  run "tests on PostgreSQL" env DATABASE_URL="$PG_URL" $BIN/pytest glasshouse --junitxml="$REPORTS/postgres.xml"
elif [ "$CI" = "true" ]; then
  cat "$REPORTS/pg-error.txt"; failed+=("PostgreSQL not reachable under CI")
else
  skipped+=("PostgreSQL tests: not reachable at $PG_URL ($(head -c 200 "$REPORTS/pg-error.txt"))")
fi

# Before the browser tests: e2e/ runs the installed agent against the real server.
step "endpoint agent"
bash scripts/setup-agent-test-deps.sh; agent_deps=$?
if [ $agent_deps -eq 0 ] || [ "$CI" != "true" ]; then
  # The agent has its own virtualenv: it must install and run without any of the server's packages.
  [ -x agent/.venv/bin/python ] || python3 -m venv agent/.venv
  agent/.venv/bin/pip install --quiet --upgrade pip
  agent/.venv/bin/pip install --quiet -e 'agent[test]'
  run "agent: ruff" bash -c "cd agent && .venv/bin/ruff check . && .venv/bin/ruff format --check ."
  run "agent: mypy --strict" bash -c "cd agent && .venv/bin/mypy"
  run "agent tests" bash -c "cd agent && .venv/bin/pytest -q --junitxml='$REPORTS/agent.xml'"
  [ $agent_deps -eq 0 ] || skipped+=("agent X11/systemd tests: system packages missing and not root (see scripts/setup-agent-test-deps.sh)")
else
  failed+=("agent test dependencies unavailable under CI")
fi

step "browser tests"
bash scripts/ensure-chromium.sh; chromium_status=$?
if [ $chromium_status -eq 0 ]; then
  run "browser tests (Chromium)" $BIN/pytest e2e --junitxml="$REPORTS/browser.xml"
elif [ "$CI" = "true" ]; then
  failed+=("Chromium unavailable under CI")
else
  skipped+=("browser tests: Chromium is not installed and cannot be installed without root")
fi

echo
echo "==> summary"
for s in "${skipped[@]+"${skipped[@]}"}"; do echo "SKIPPED: $s"; done
for f in "${failed[@]+"${failed[@]}"}"; do echo "FAILED: $f"; done
$BIN/python scripts/sum_junit.py "$REPORTS"/*.xml
[ ${#failed[@]} -eq 0 ]
