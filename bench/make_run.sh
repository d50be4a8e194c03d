#!/usr/bin/env bash
# Time `make run` from start to the first served page (the login page answering 200).
#   bench/make_run.sh cold   removes .venv and var/ first (fresh machine: install, demo cohort, import)
#   bench/make_run.sh warm   reuses everything
# Stops the server afterwards. Prints: "<mode> make run: N s to a served page".
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-warm}
if [ "$mode" = cold ]; then rm -rf .venv var; fi
log=$(mktemp)
start=$(date +%s.%N)
setsid make run >"$log" 2>&1 &
pid=$!
trap 'kill -- -$pid 2>/dev/null || true' EXIT
until curl -fs -o /dev/null http://127.0.0.1:8000/accounts/login/; do
  if ! kill -0 $pid 2>/dev/null; then echo "make run exited early:"; tail -20 "$log"; exit 1; fi
  sleep 0.5
done
end=$(date +%s.%N)
printf '%s make run: %.1f s to a served page\n' "$mode" "$(echo "$end - $start" | bc)"
