""".env.example lists exactly the variables the configuration reads, each with a comment and
its default.

The variables read are found by parsing the source with `ast`, not by importing it: every
string literal passed as the name to a reading function (the module's own `env_*` helpers,
os.environ.get, os.getenv, os.environ[...]). tinyrag_site/settings.py is the Django
configuration; deploy/gunicorn.conf.py reads the web server's few variables, listed too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "tinyrag_site" / "settings.py"
GUNICORN = ROOT / "deploy" / "gunicorn.conf.py"
ENV_EXAMPLE = ROOT / ".env.example"
# `NAME=value` at the start of a line, or after "# " for a variable listed commented out.
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
COMPUTED = object()  # a default that depends on other settings (DEBUG, BASE_DIR...)
# Nodes a default may be built of to count as a constant: literals and arithmetic on them.
CONSTANT_NODES = (
    ast.Constant, ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop,
    ast.Load, ast.Expression,
)  # fmt: skip


@dataclass(frozen=True)
class Listed:
    name: str
    value: str
    commented: bool
    line: int  # 0-based


def _is_environ(node: ast.expr) -> bool:
    """`os.environ` (or a bare `environ`)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id == "environ"


def _reader(func: ast.expr, helpers: set[str]) -> bool:
    if isinstance(func, ast.Name):
        return func.id in helpers
    if isinstance(func, ast.Attribute):
        return (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
    return False


def _constant(node: ast.expr | None):
    """The value of a default made of literals only (None when there is none), else COMPUTED."""
    if node is None:
        return None
    if not all(isinstance(n, CONSTANT_NODES) for n in ast.walk(node)):
        return COMPUTED
    return eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}})


def defaults_read(source: Path) -> dict[str, object]:
    """Every environment variable `source` reads by a literal name -> its default: a constant,
    None for none, COMPUTED for one that depends on something else."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    helpers = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("env_")
    }
    found: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _reader(node.func, helpers):
            if node.args and isinstance(node.args[0], ast.Constant):
                default = node.args[1] if len(node.args) > 1 else None
                found[node.args[0].value] = _constant(default)
        elif (
            isinstance(node, ast.Subscript)
            and _is_environ(node.value)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            found[node.slice.value] = None
    return found


def all_defaults() -> dict[str, object]:
    return {**defaults_read(SETTINGS), **defaults_read(GUNICORN)}


def example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()


def listed() -> list[Listed]:
    return [
        Listed(m.group(2), m.group(3), bool(m.group(1)), number)
        for number, line in enumerate(example_lines())
        if (m := ASSIGNMENT.match(line))
    ]


def as_env_text(default: object) -> str:
    """How a default is written in the environment: 1/0 for booleans, commas for lists."""
    if default is None:
        return ""
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, list | tuple):
        return ",".join(default)
    return str(default)


def test_the_parser_finds_every_way_of_reading_a_variable(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "import os\n"
        "def env_int(name, default):\n"
        "    return int(os.environ.get(name, default))\n"
        "A = env_int('ALPHA', 15 * 60)\n"
        "B = os.environ.get('BRAVO', 'x')\n"
        "C = os.getenv('CHARLIE')\n"
        "D = os.environ['DELTA']\n"
        "E = env_int('ECHO', 1 if A else 2)\n"
        "F = env_int(name_from_elsewhere, 2)\n"
        "G = dict(get='GOLF')\n",
        encoding="utf-8",
    )
    assert defaults_read(source) == {
        "ALPHA": 900,
        "BRAVO": "x",
        "CHARLIE": None,
        "DELTA": None,
        "ECHO": COMPUTED,
    }


def test_the_parser_reads_both_real_sources():
    """Names and defaults picked by hand from each file: the route the other tests rely on."""
    settings = defaults_read(SETTINGS)
    assert settings["SECRET_KEY"] is None
    assert settings["DEBUG"] is False
    assert settings["TINYRAG_LOGIN_FAILURE_WINDOW"] == 900
    assert settings["TINYRAG_UPLOAD_MAX_BYTES"] == 10 * 2**20
    assert settings["TINYRAG_HTTPS"] is COMPUTED
    assert "TINYRAG_S3_BUCKET" in settings
    gunicorn = defaults_read(GUNICORN)
    assert (gunicorn["TINYRAG_BIND"], gunicorn["TINYRAG_WARM_UP"]) == ("0.0.0.0:8000", "1")


def test_env_example_lists_exactly_the_variables_read():
    read = set(all_defaults())
    names = {entry.name for entry in listed()}
    assert sorted(read - names) == [], "read, but missing from .env.example"
    assert sorted(names - read) == [], "in .env.example, but read nowhere"


def test_every_variable_is_listed_once():
    names = [entry.name for entry in listed()]
    assert sorted({name for name in names if names.count(name) > 1}) == []


def test_every_variable_has_its_own_comment_right_above_it():
    lines = example_lines()
    lacking = [
        entry.name
        for entry in listed()
        if entry.line == 0
        or not lines[entry.line - 1].startswith("#")
        or ASSIGNMENT.match(lines[entry.line - 1])
    ]
    assert lacking == []


def test_every_listed_value_is_the_default():
    """A constant default is the value shown; a computed one (from DEBUG, from a folder) is
    commented out, its comment saying what it is."""
    defaults = all_defaults()
    wrong = []
    for entry in listed():
        default = defaults[entry.name]
        if default is COMPUTED:
            if not entry.commented:
                wrong.append(f"{entry.name}: a computed default, yet set")
        elif entry.value != as_env_text(default):
            wrong.append(f"{entry.name}={entry.value}, but the default is {as_env_text(default)}")
    assert wrong == []


def test_a_copy_of_the_file_sets_only_what_must_be_set():
    """Only SECRET_KEY is uncommented: a copied .env keeps every other default, including the
    folders the container image sets (deploy/Dockerfile)."""
    assert [entry.name for entry in listed() if not entry.commented] == ["SECRET_KEY"]
