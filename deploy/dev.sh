#!/usr/bin/env bash
# Set up and run TinyRAG on http://127.0.0.1:8000 with SQLite (development settings).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup.sh
export DEBUG=${DEBUG:-1}
py=.venv/bin/python
$py manage.py migrate --no-input
echo "Open http://127.0.0.1:8000/ (sign up there; 'manage.py createsuperuser' for the admin)."
exec $py manage.py runserver 127.0.0.1:8000
