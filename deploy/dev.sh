#!/usr/bin/env bash
# Set up and run TinyRAG on http://127.0.0.1:8000 with SQLite (development settings):
# the web server and a background worker together; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup.sh
export DEBUG=${DEBUG:-1}
py=.venv/bin/python
$py manage.py migrate --no-input
# Data and index on first start; without network the app starts anyway and says what to run.
$py manage.py bootstrap || echo "bootstrap did not finish (see above); starting the app anyway."

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT INT TERM
$py manage.py db_worker --interval 0.5 --no-reload &
pids+=($!)
echo "Open http://127.0.0.1:8000/ (sign up there; 'manage.py createsuperuser' for the admin)."
$py manage.py runserver 127.0.0.1:8000 &
pids+=($!)
wait -n "${pids[@]}"  # when either stops, stop the other
