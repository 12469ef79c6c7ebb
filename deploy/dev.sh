#!/usr/bin/env bash
# Set up and run TinyRAG on http://127.0.0.1:8000 with SQLite (development settings):
# the web server and a background worker together; Ctrl-C stops both.
#   bash deploy/dev.sh                                        # downloads TinyImageNet on first start
#   bash deploy/dev.sh --archive ~/Downloads/tiny-imagenet-200.zip   # or uses a copy you have
# Later starts skip what is done: pip when the dependencies did not change (deploy/setup.sh),
# the check of every image when it passed for this data (`manage.py bootstrap --check` redoes it).
# If the server or the worker stops, it is started again after a short pause; the other keeps running.
set -euo pipefail
called_from=$PWD  # a relative --archive path is the caller's, not the project folder's
cd "$(dirname "$0")/.."

archive=""
while [ $# -gt 0 ]; do
  case "$1" in
    --archive) [ $# -ge 2 ] || { echo "--archive needs a path to tiny-imagenet-200.zip" >&2; exit 2; }
               archive=$2; shift 2 ;;
    --archive=*) archive=${1#--archive=}; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "Unknown option: $1 (dev.sh takes --archive PATH)" >&2; exit 2 ;;
  esac
done
case "$archive" in "" | /*) ;; *) archive="$called_from/$archive" ;; esac
if [ -n "$archive" ] && [ ! -f "$archive" ]; then
  echo "--archive $archive: no such file" >&2
  exit 2
fi

bash deploy/setup.sh
# Development settings that every later command reads too (tinyrag_site/settings.py reads .env),
# so the commands printed below and on the pages work as typed.
if [ ! -f .env ]; then
  sed 's/^# DEBUG=0$/DEBUG=1/' .env.example > .env
  grep -q '^DEBUG=1$' .env || { rm -f .env; echo "could not write .env from .env.example" >&2; exit 1; }
  echo "Wrote .env with development settings (DEBUG=1); edit it to change any setting."
fi
# An older .env (copied before dev.sh wrote one) may leave DEBUG off: this is a development run.
if ! grep -q '^DEBUG=1$' .env; then
  echo "Note: .env does not set DEBUG=1; dev.sh runs with DEBUG=1, but manage.py commands you type"
  echo "need it too: add the line DEBUG=1 to .env (or prefix them with DEBUG=1)."
fi
export DEBUG=${DEBUG:-1}
py=.venv/bin/python
$py manage.py migrate --no-input
# Data and index on first start; without network the app starts anyway and says what to run.
$py manage.py bootstrap ${archive:+--archive "$archive"} \
  || echo "bootstrap did not finish (see above); starting the app anyway."

# The two processes, by name: web (runserver) and worker (manage.py worker: db_worker, or
# rqworker with TINYRAG_TASKS_BACKEND=rq). Plain variables and a once-a-second look, not
# `wait -n`: macOS still ships bash 3.2.
web_cmd=("$py" manage.py runserver 127.0.0.1:8000)
worker_cmd=("$py" manage.py worker --interval 0.5)
start() {  # start web|worker
  if [ "$1" = web ]; then "${web_cmd[@]}" & web_pid=$!; web_since=$SECONDS
  else "${worker_cmd[@]}" & worker_pid=$!; worker_since=$SECONDS; fi
}
web_pid="" worker_pid=""
stop() {
  local status=$?
  trap - EXIT INT TERM
  kill $web_pid $worker_pid 2>/dev/null || true
  wait $web_pid $worker_pid 2>/dev/null || true
  exit "$status"
}
trap stop EXIT INT TERM

web_pause=1 worker_pause=1
start worker
start web
# Both load their models before serving (the first search does not wait for CLIP): a page
# opened meanwhile is answered once the web server's output says "warm-up: ready".
echo "Open http://127.0.0.1:8000/ and sign up there (it answers once the server says \"warm-up: ready\")."
echo "An admin account for /admin/: $py manage.py createsuperuser"
while sleep 1; do
  for name in web worker; do
    eval "p=\$${name}_pid since=\$${name}_since pause=\$${name}_pause"
    kill -0 "$p" 2>/dev/null && continue
    status=0
    wait "$p" || status=$?
    what=$([ "$name" = web ] && echo "web server (runserver)" || echo "worker (manage.py worker)")
    # One that ran a minute was working: its next stop starts the pauses at 1 s again.
    if [ $((SECONDS - since)) -ge 60 ]; then pause=1; fi
    echo "dev.sh: the $what stopped with exit status $status; starting it again in $pause s" \
      "(the other keeps running; Ctrl-C stops both)." >&2
    sleep "$pause"
    eval "${name}_pause=$(( pause * 2 > 30 ? 30 : pause * 2 ))"
    start "$name"
  done
done
