#!/usr/bin/env bash
# Set up and run TinyRAG on http://127.0.0.1:8000 with SQLite (development settings).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup.sh
export DEBUG=${DEBUG:-1}
py=.venv/bin/python
$py manage.py migrate --no-input
# Data and index on first start; without network the app starts anyway and says what to run.
$py manage.py bootstrap || echo "bootstrap did not finish (see above); starting the app anyway."
echo "Open http://127.0.0.1:8000/ (sign up there; 'manage.py createsuperuser' for the admin)."
exec $py manage.py runserver 127.0.0.1:8000
