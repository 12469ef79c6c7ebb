"""First run: `first_missing_step()` names the first step still to do, in the order dataset
imported -> models on disk -> index built, with a command that runs as printed; the
setup_step partial shows it to people (the command to staff or on a development server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.template.loader import render_to_string

from search.index.service import clear_index_services
from search.ops.health import SetupStep, first_missing_step, manage_command
from tests.fixtures.models import install_in_hub_cache

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_site(clip_settings, tmp_path):
    """Nothing imported, the tiny CLIP configured, an empty index folder."""
    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_INDEX_NAME = "tiny"
    clear_index_services()
    yield clip_settings
    clear_index_services()


def test_nothing_done_names_the_dataset_even_though_models_and_index_are_missing_too(
    empty_site, tmp_path
):
    empty_site.TINYRAG_CLIP_MODEL = str(tmp_path / "no-such-model")
    step = first_missing_step()
    assert step is not None
    assert (step.name, step.done) == ("dataset", ())
    assert step.command == ".venv/bin/python manage.py bootstrap"
    assert step.alternative == (
        ".venv/bin/python manage.py bootstrap --archive ~/Downloads/tiny-imagenet-200.zip"
    )
    assert [(item.name, item.state) for item in step.progress] == [
        ("dataset", "current"),
        ("models", "todo"),
        ("index", "todo"),
    ]


def test_dataset_missing_while_models_are_there_ticks_the_models(empty_site):
    step = first_missing_step()
    assert (step.name, step.done) == ("dataset", ("models",))


def test_dataset_imported_but_model_directory_gone_names_the_models(
    dataset_imported, clip_settings, tmp_path
):
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "moved-away")
    step = first_missing_step()
    assert (step.name, step.done) == ("models", ("dataset",))
    assert step.command == ".venv/bin/python manage.py setup_models"
    assert "TINYRAG_CLIP_MODEL" in step.detail
    assert "TINYRAG_CLIP_MODEL" not in step.problem  # plain words for everyone


def test_a_hub_id_counts_only_once_it_is_in_the_cache(
    dataset_imported, clip_settings, tiny_clip_dir, tmp_path
):
    """A hub id is looked up where the embedders look: TINYRAG_MODEL_DIR's hub layout."""
    cache = tmp_path / "hf-cache"
    clip_settings.TINYRAG_CLIP_MODEL = "sentence-transformers/clip-ViT-B-32"
    clip_settings.TINYRAG_MODEL_DIR = str(cache)
    assert first_missing_step().name == "models"
    install_in_hub_cache(tiny_clip_dir, cache, "sentence-transformers/clip-ViT-B-32")
    assert first_missing_step().name == "index"


def test_a_missing_text_encoder_is_a_missing_model(dataset_imported, clip_settings, tmp_path):
    clip_settings.TINYRAG_TEXT_MODEL = str(tmp_path / "no-multilingual")
    step = first_missing_step()
    assert step.name == "models"
    assert "TINYRAG_TEXT_MODEL" in step.detail


def test_the_models_counted_are_those_of_the_text_route(
    dataset_imported, clip_settings, tmp_path, tiny_multilingual_dir
):
    clip_settings.TINYRAG_TEXT_MODEL = str(tmp_path / "no-multilingual")
    clip_settings.TINYRAG_TEXT_ROUTE = "clip"  # no query takes it: not missing
    assert first_missing_step().name == "index"
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    clip_settings.TINYRAG_TEXT_ROUTE = "translate"
    clip_settings.TINYRAG_TRANSLATE_MODEL = str(tmp_path / "no-marian")
    step = first_missing_step()
    assert step.name == "models"
    assert "TINYRAG_TRANSLATE_MODEL" in step.detail
    assert "TINYRAG_TEXT_MODEL" not in step.detail  # that one is on disk


def test_a_translation_model_counts_once_it_is_in_the_cache(
    dataset_imported, clip_settings, tiny_marian_dir, tmp_path
):
    """A bare MarianMT name is Helsinki-NLP's, found where the translator looks."""
    cache = tmp_path / "hf-cache"
    clip_settings.TINYRAG_TEXT_ROUTE = "translate"
    clip_settings.TINYRAG_TRANSLATE_MODEL = "opus-mt-id-en"
    clip_settings.TINYRAG_MODEL_DIR = str(cache)
    # CLIP is a local directory (clip_settings), so only the translation model is looked up
    assert first_missing_step().name == "models"
    install_in_hub_cache(tiny_marian_dir, cache, "Helsinki-NLP/opus-mt-id-en")
    assert first_missing_step().name == "index"


def test_dataset_and_models_there_names_the_index(dataset_imported):
    step = first_missing_step()
    assert (step.name, step.done) == ("index", ("dataset", "models"))
    assert step.problem == "the search index has not been built yet."
    assert step.command == ".venv/bin/python manage.py build_index --limit-per-class 50"


def test_an_index_of_another_model_must_be_built_again(search_index, clip_settings, tmp_path):
    other = tmp_path / "other-clip"
    shutil.copytree(clip_settings.TINYRAG_CLIP_MODEL, other)
    clip_settings.TINYRAG_CLIP_MODEL = str(other)
    step = first_missing_step()
    assert (step.name, step.done) == ("index", ("dataset", "models"))
    assert "another model" in step.problem
    assert str(other) in step.detail


def test_everything_done_means_ready(search_index):
    assert first_missing_step() is None


def test_the_printed_index_command_runs_as_printed(
    make_site, tinyimagenet_zip, tiny_clip_dir, empty_site
):
    """On a site of its own (another process cannot see the test database): dataset imported,
    models there, so the step is the index; its command, split as a shell would and run from
    the project folder, publishes the index."""
    from search.catalog.datasets.tinyimagenet import prepare

    site = make_site(
        database="suite",
        TINYRAG_CLIP_MODEL=str(tiny_clip_dir),
        TINYRAG_DEVICE="cpu",
        TINYRAG_INDEX_NAME="tiny",
        TINYRAG_ENV_FILE="",
    )
    root = site.data_dir / "tiny-imagenet-200"
    prepare(root, tinyimagenet_zip)
    site.run("migrate", "--no-input", "-v", "0")
    site.run("import_dataset", "--root", str(root), "--workers", "0", "-v", "0")
    call_command("import_dataset", "--root", str(root), "--workers", "0", verbosity=0)
    step = first_missing_step()  # this process: the same state, in the test database
    assert step.name == "index"
    proc = subprocess.run(
        step.command.split(), cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert (site.index_dir / "tiny" / "manifest.json").is_file()


def test_manage_command_names_this_python_from_the_project_folder():
    assert Path(sys.executable).is_relative_to(ROOT), "the suite runs in the project's venv"
    assert manage_command("doctor") == f"{Path(sys.executable).relative_to(ROOT)} manage.py doctor"


# --- the partial ---------------------------------------------------------------------------

STEP = SetupStep(
    name="models",
    problem="the search model has not been downloaded yet.",
    command=".venv/bin/python manage.py setup_models",
    detail="TINYRAG_CLIP_MODEL=/srv/models/clip: its directory does not exist",
    done=("dataset",),
)


def render(step, *, staff: bool, debug: bool, settings) -> str:
    from django.contrib.auth.models import AnonymousUser, User

    settings.DEBUG = debug
    user = User(username="u", is_staff=staff) if staff is not None else AnonymousUser()
    return render_to_string("partials/setup_step.html", {"setup_step": step, "user": user})


def test_the_card_names_the_problem_and_shows_the_steps_in_order(settings):
    html = render(STEP, staff=False, debug=False, settings=settings)
    assert "Search is not ready yet: the search model has not been downloaded yet." in html
    positions = [html.index(label) for label in ("Import the images", "Download the search")]
    assert positions == sorted(positions)
    assert html.index("Build the search index") > positions[1]
    assert html.count("status-done") == 1
    assert 'aria-current="step"' in html


def test_users_are_asked_to_tell_the_operator_and_see_no_command_or_path(settings):
    html = render(STEP, staff=False, debug=False, settings=settings)
    assert "Ask whoever runs this server to download the search model." in html
    assert "manage.py" not in html
    assert "/srv/models" not in html
    assert "<pre>" not in html


@pytest.mark.parametrize(("staff", "debug"), [(True, False), (False, True)])
def test_staff_or_a_development_server_see_the_command(settings, staff, debug):
    html = render(STEP, staff=staff, debug=debug, settings=settings)
    assert "<pre><code>.venv/bin/python manage.py setup_models</code></pre>" in html
    assert "/srv/models/clip" in html
    assert "Ask whoever runs this server" not in html


def test_nothing_is_rendered_when_search_is_ready(settings):
    assert render(None, staff=True, debug=True, settings=settings).strip() == ""


def test_the_real_step_renders_for_a_dataset_missing(empty_site, settings):
    html = render(first_missing_step(), staff=True, debug=False, settings=settings)
    assert "no images have been imported yet." in html
    assert "bootstrap --archive ~/Downloads/tiny-imagenet-200.zip" in html
    assert django_settings.DEBUG is False


# --- the development server warms the models up before it serves ----------------------------


def run_devserver(site, *args: str) -> tuple[subprocess.Popen, Path, str]:
    from tests.fixtures.http import unused_port

    port = unused_port()
    log = site.folder / "runserver.log"
    server = subprocess.Popen(
        site.command("runserver", "--noreload", f"127.0.0.1:{port}", *args),
        cwd=ROOT,
        env={**site.env, "PYTHONUNBUFFERED": "1"},  # its lines and its log's, in order
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return server, log, f"http://127.0.0.1:{port}"


def test_the_development_server_loads_clip_before_it_answers_a_request(make_site, tiny_clip_dir):
    """A request sent as soon as the port listens is answered after the warm-up. No index
    here: the warm-up says what is not ready, CLIP loads regardless, and the server serves."""
    import urllib.request

    from tests.fixtures.site import wait_for

    site = make_site(
        TINYRAG_CLIP_MODEL=str(tiny_clip_dir), TINYRAG_TEXT_MODEL="", TINYRAG_DEVICE="cpu"
    )
    site.env["TINYRAG_ENV_FILE"] = ""
    site.run("migrate", "--no-input", "-v", "0")
    server, log, url = run_devserver(site)
    try:
        wait_for(lambda: "Starting development server" in log.read_text(), "the port", 120)
        with urllib.request.urlopen(f"{url}/healthz", timeout=180) as response:
            assert response.status == 200
        wait_for(lambda: '"GET /healthz' in log.read_text(), "the request's log line")
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    order = [
        text.index("Starting development server"),
        text.index("warm-up: loading the index, image model, query path, URL map before the "
                   "first request"),
        text.index(f"Loaded ClipEmbedder('{tiny_clip_dir}'"),
        text.index("warm-up: finished in "),
        text.index('"GET /healthz'),
    ]  # fmt: skip
    assert order == sorted(order), text
    assert "but not ready: index, query path" in text


def test_the_development_server_can_skip_the_warm_up(make_site, tiny_clip_dir):
    import urllib.request

    from tests.fixtures.site import wait_for

    site = make_site(TINYRAG_CLIP_MODEL=str(tiny_clip_dir), TINYRAG_WARM_UP="0")
    site.env["TINYRAG_ENV_FILE"] = ""
    server, log, url = run_devserver(site)
    try:
        wait_for(lambda: "Quit the server with" in log.read_text(), "the server", timeout=120)
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
            assert response.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "warm-up" not in log.read_text()
