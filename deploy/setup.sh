#!/usr/bin/env bash
# Create the virtual environment and install TinyRAG into it (idempotent).
#   bash deploy/setup.sh          # the app
#   bash deploy/setup.sh dev      # the app + test and lint tools
# torch and torchvision go first, in one pip call, pinned together by deploy/constraints.txt.
# pip runs only when pyproject.toml, deploy/constraints.txt, this script or the extras changed
# since the last install that finished (a stamp in the venv); FORCE=1 runs it regardless.
# Then the translation catalogues (locale/*/LC_MESSAGES/django.po) are compiled to the .mo
# files Django reads, which are never committed: that needs GNU gettext's msgfmt.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
extras=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
# The install's inputs, as one hash; the stamp of an install with extras "X" is .installed-X.
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }  # macOS has shasum
inputs() { cat pyproject.toml deploy/constraints.txt deploy/setup.sh | sha256 | cut -d' ' -f1; }
stamp_ok() { [ -f "$VENV/.installed-$1" ] && [ "$(cat "$VENV/.installed-$1")" = "$(inputs)" ]; }
wanted=${extras:-app}

# Compiled on every run (quick: Django skips a .mo newer than its .po). Nothing to do before
# there is a catalogue (the Docker image's dependency layer, which compiles after COPY).
compile_messages() {
  if ! compgen -G "locale/*/LC_MESSAGES/*.po" >/dev/null; then
    return 0
  fi
  if ! command -v msgfmt >/dev/null 2>&1; then
    echo "msgfmt (GNU gettext) is missing: without it the pages cannot be shown in Bahasa" \
      "Indonesia. Install it (Debian/Ubuntu: sudo apt-get install gettext; macOS: brew" \
      "install gettext), then run bash deploy/setup.sh${extras:+ $extras} again." >&2
    exit 1
  fi
  # --ignore='*': settings.LOCALE_PATHS only, never a walk through the venv or the data folder
  DEBUG=1 "$VENV/bin/python" manage.py compilemessages --ignore='*' --verbosity 0
  echo "Compiled the translation catalogues (locale/)"
}

# The dev extras include the app: either stamp will do for a plain install.
if [ "${FORCE:-0}" != 1 ] && { stamp_ok "$wanted" || { [ -z "$extras" ] && stamp_ok dev; }; }; then
  echo "Dependencies unchanged since the last install; pip skipped" \
    "(FORCE=1 bash deploy/setup.sh${extras:+ $extras} reinstalls)."
  compile_messages
  exit 0
fi
pip=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -c deploy/constraints.txt "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" install -c deploy/constraints.txt -e ".${extras:+[$extras]}"
inputs > "$VENV/.installed-$wanted"
echo "Installed TinyRAG into $VENV"
compile_messages
