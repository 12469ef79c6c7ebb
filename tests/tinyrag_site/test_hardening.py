"""Leaks and hardening: model paths, staff names, tokens after a password change, the
Content-Security-Policy, no-store account pages, dataset roots, and who may reach gunicorn."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from search.catalog.models import Dataset, Image
from search.descriptions.models import Description
from search.ml.names import display_model_id
from search.queries.models import SearchQuery, SearchResult
from search.queries.upload_handlers import body_limit
from tests.evaluation.test_views import make_run

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "a-different-long-passphrase-77"
CLIP_DIR = "/srv/tinyrag/models/tiny-clip"
VLM_DIR = "/srv/tinyrag/models/Qwen2-VL-2B-Instruct"


def token_client(key: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


# --- model ids are shown without their server paths ---------------------------------------


@pytest.mark.parametrize(
    ("model_id", "shown"),
    [
        ("sentence-transformers/clip-ViT-B-32", "sentence-transformers/clip-ViT-B-32"),
        ("clip-ViT-B-32", "clip-ViT-B-32"),
        ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"),
        ("/srv/tinyrag/models/tiny-clip", "tiny-clip"),
        ("/srv/tinyrag/models/tiny-clip/", "tiny-clip"),
        ("./models/qwen", "qwen"),
        ("~/models/qwen", "qwen"),
        ("data/models/qwen", "qwen"),
        ("C:\\models\\qwen", "qwen"),
    ],
)
def test_a_model_id_is_shown_as_a_hub_id_or_a_directory_name(model_id, shown):
    assert display_model_id(model_id) == shown


@pytest.fixture
def described_query(user):
    """A query embedded by a local CLIP directory, described by a local Qwen2-VL directory."""
    query = SearchQuery.objects.create(
        user=user, kind="text", text="a lemon", top_k=1, encoder=CLIP_DIR,
        index_name="tiny", duration_ms=3.0,
    )  # fmt: skip
    description = Description.objects.create(
        query=query, image=None, image_key="upload:0", backend="transformers", model=VLM_DIR,
        prompt_version="v1", context_mode="none", status="done", text="A lemon.",
        finished_at=timezone.now(),
    )  # fmt: skip
    return query, description


def test_the_api_names_local_models_without_their_paths(user, described_query):
    query, description = described_query
    api = token_client(Token.objects.create(user=user).key)

    listed = api.get("/api/v1/queries/")
    detail = api.get(f"/api/v1/queries/{query.pk}")
    described = api.get(f"/api/v1/descriptions/{description.pk}")

    assert listed.json()["results"][0]["encoder"] == "tiny-clip"
    assert detail.json()["encoder"] == "tiny-clip"
    assert described.json()["model"] == "Qwen2-VL-2B-Instruct"
    for response in (listed, detail, described):
        assert "/srv/tinyrag" not in response.content.decode()


def test_the_pages_name_local_models_without_their_paths(auth_client, user, described_query):
    query, description = described_query

    result_page = auth_client.get(f"/history/{query.pk}/").content.decode()
    description_page = auth_client.get(f"/descriptions/{description.pk}/").content.decode()
    user.is_staff = True  # staff also see the backend and the prompt version
    user.save()
    staff_page = auth_client.get(f"/descriptions/{description.pk}/").content.decode()

    assert "Model tiny-clip ·" in result_page
    assert "Written by Qwen2-VL-2B-Instruct." in description_page
    assert "Qwen2-VL-2B-Instruct (transformers)" in staff_page
    assert "/srv/tinyrag" not in result_page + description_page + staff_page


def test_the_search_and_collections_pages_name_the_index_model_without_its_path(
    auth_client, search_index, clip_settings
):
    directory = Path(clip_settings.TINYRAG_CLIP_MODEL)  # the tiny CLIP, in a temporary folder

    search = auth_client.get("/").content.decode()
    collections = auth_client.get("/collections/").content.decode()

    assert f"Searching 20 images with {directory.name}." in search
    assert f"matched by the model <strong>{directory.name}</strong>" in collections
    assert str(directory.parent) not in search + collections


def test_the_evaluation_page_and_download_name_models_without_their_paths(auth_client):
    run = make_run(
        model_ids={"clip": CLIP_DIR, "text": CLIP_DIR, "vlm": VLM_DIR,
                   "vlm_backend": "transformers"},
        index_manifest={"name": "tiny", "count": 20, "dataset": "tiny-imagenet-200",
                        "splits": ["train"], "index_type": "flat", "model_id": CLIP_DIR},
    )  # fmt: skip

    page = auth_client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    download = auth_client.get(reverse("evaluation:run-json", args=[run.pk]))

    assert "<th>clip</th><td><code>tiny-clip</code></td>" in page
    assert "<th>vlm</th><td><code>Qwen2-VL-2B-Instruct</code></td>" in page
    assert download.json()["model_ids"] == {
        "clip": "tiny-clip", "text": "tiny-clip", "vlm": "Qwen2-VL-2B-Instruct",
        "vlm_backend": "transformers",
    }  # fmt: skip
    assert download.json()["index_manifest"]["model_id"] == "tiny-clip"
    assert "/srv/tinyrag" not in page + download.content.decode()


# --- only staff see who ran an evaluation -------------------------------------------------


@pytest.fixture
def run_by_carol(django_user_model):
    carol = django_user_model.objects.create_user("carol", "carol@example.com", is_staff=True)
    return make_run(created_by=carol)


def test_users_do_not_see_which_staff_member_ran_an_evaluation(auth_client, run_by_carol):
    listing = auth_client.get("/evaluation/").content.decode()
    page = auth_client.get(reverse("evaluation:run", args=[run_by_carol.pk])).content.decode()
    download = auth_client.get(reverse("evaluation:run-json", args=[run_by_carol.pk])).json()

    assert "carol" not in listing
    assert "carol" not in page
    assert "created_by" not in download


def test_staff_see_who_ran_an_evaluation(admin_client, run_by_carol):
    listing = admin_client.get("/evaluation/").content.decode()
    page = admin_client.get(reverse("evaluation:run", args=[run_by_carol.pk])).content.decode()
    download = admin_client.get(reverse("evaluation:run-json", args=[run_by_carol.pk])).json()

    assert '<td data-label="Started by">carol</td>' in listing
    assert "<th>started by</th><td>carol</td>" in page
    assert download["created_by"] == "carol"


# --- a new password ends the old API token and the other sessions -------------------------


def assert_token_replaced(user, old_key: str) -> None:
    assert token_client(old_key).get("/api/v1/queries/").status_code == 401
    new_key = Token.objects.get(user=user).key
    assert new_key != old_key
    assert token_client(new_key).get("/api/v1/queries/").status_code == 200


def test_the_password_change_page_replaces_the_api_token(auth_client, user, password):
    old_key = Token.objects.create(user=user).key

    response = auth_client.post(
        "/accounts/password/change/",
        {"old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert_token_replaced(user, old_key)


def test_a_password_set_in_the_admin_replaces_the_api_token(admin_client, user):
    old_key = Token.objects.create(user=user).key

    response = admin_client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert_token_replaced(user, old_key)


def test_manage_py_changepassword_replaces_the_api_token(user, monkeypatch):
    old_key = Token.objects.create(user=user).key
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)

    call_command("changepassword", "alice", stdout=open("/dev/null", "w"))  # noqa: SIM115

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert_token_replaced(user, old_key)


def test_logging_in_keeps_the_api_token(client, user, password):
    key = Token.objects.create(user=user).key

    response = client.post("/accounts/login/", {"username": "alice", "password": password})

    assert response.status_code == 302
    assert Token.objects.get(user=user).key == key


def test_a_password_hash_upgraded_at_login_keeps_the_api_token(client, user, password, settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    user.password = make_password(password, hasher="md5")
    user.save()
    key = Token.objects.get_or_create(user=user)[0].key

    response = client.post("/accounts/login/", {"username": "alice", "password": password})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")  # the same password, hashed anew
    assert Token.objects.get(user=user).key == key


def test_a_password_change_logs_out_the_users_other_sessions(user, password):
    mine, other = Client(), Client()
    mine.force_login(user)
    other.force_login(user)
    assert other.get("/history/").status_code == 200

    mine.post(
        "/accounts/password/change/",
        {"old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert mine.get("/history/").status_code == 200  # the session that changed it stays
    response = other.get("/history/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_regenerating_the_token_on_the_profile_page_ends_the_old_one(auth_client, user):
    old_key = Token.objects.create(user=user).key

    assert auth_client.post("/accounts/profile/").status_code == 302

    assert_token_replaced(user, old_key)


# --- Content-Security-Policy, and pages that need nothing it forbids ----------------------


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}


def test_every_kind_of_response_carries_the_content_security_policy(auth_client, client):
    signed_in = ["/", "/history/", "/collections/", "/evaluation/", "/accounts/profile/",
                 "/history/999/", "/api/v1/queries/"]  # fmt: skip
    anonymous = ["/accounts/login/", "/accounts/signup/", "/api/docs/", "/readyz", "/healthz"]
    responses = [auth_client.get(url) for url in signed_in] + [client.get(u) for u in anonymous]
    for response in responses:
        assert directives(response) == EXPECTED_POLICY, response.request["PATH_INFO"]


class InlineCode(HTMLParser):
    """What a page holds that a policy without 'unsafe-inline' blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        if "style" in names:
            self.found.append(f"style= on <{tag}>")
        for name, value in attrs:
            if name in {"href", "src", "action"} and (value or "").startswith("javascript:"):
                self.found.append(f"javascript: URL on <{tag}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_no_page_needs_inline_scripts_handlers_or_styles(
    auth_client, admin_client, dataset_imported, described_query
):
    query, description = described_query
    for rank, image in enumerate(Image.objects.order_by("id")[:3], start=1):
        SearchResult.objects.create(query=query, rank=rank, image=image, score=1 - rank / 10)
    run = make_run()
    pages = {
        url: auth_client.get(url)
        for url in ["/", f"/history/{query.pk}/", "/history/", "/collections/",
                    f"/descriptions/{description.pk}/", "/evaluation/",
                    reverse("evaluation:run", args=[run.pk]), "/accounts/profile/",
                    "/accounts/password/change/"]
    }  # fmt: skip
    pages["/evaluation/ (staff)"] = admin_client.get("/evaluation/")
    pages["/accounts/login/"] = Client().get("/accounts/login/")
    pages["/accounts/signup/"] = Client().get("/accounts/signup/")
    for url, response in pages.items():
        assert response.status_code == 200, url
        assert inline_code(response.content.decode()) == [], url
    assert render_to_string("503.html", {"message": "down"}).count('<link rel="stylesheet"') == 1
    assert inline_code(render_to_string("503.html", {"message": "down"})) == []


def test_the_api_docs_load_their_script_from_a_url(client):
    page = client.get("/api/docs/")
    scripts = re.findall(r'<script src="([^"]+)"', page.content.decode())
    assert inline_code(page.content.decode()) == []
    init = client.get([s for s in scripts if "script=" in s][0].replace("&amp;", "&"))
    assert init.status_code == 200
    assert init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()


def test_the_pages_configure_htmx_to_inject_no_style():
    base = (REPO / "templates" / "base.html").read_text()
    assert '"includeIndicatorStyles": false' in base
    css = (REPO / "static" / "css" / "app.css").read_text()
    assert ".htmx-indicator { display: none; }" in css  # what the injected <style> did


# --- account pages are never stored -------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/accounts/profile/", "/accounts/password/change/", "/accounts/password/change/done/"]
)
def test_signed_in_account_pages_are_no_store(auth_client, url):
    assert "no-store" in auth_client.get(url)["Cache-Control"]


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/signup/"])
def test_anonymous_account_pages_are_no_store(client, url):
    assert "no-store" in client.get(url)["Cache-Control"]


# --- dataset roots lie where the operator allows, and only image files are served ----------


@pytest.fixture
def data_dirs(settings, tmp_path):
    """TINYRAG_DATA_DIR (uploads inside it) and one extra allowed folder, both empty."""
    settings.TINYRAG_DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT = tmp_path / "data" / "media"
    settings.TINYRAG_DATASET_ROOTS = [str(tmp_path / "mnt" / "datasets")]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to("/")
    return tmp_path


@pytest.mark.parametrize(
    ("root", "allowed"),
    [
        ("data/tiny-imagenet-200", True),
        ("mnt/datasets", True),
        ("mnt/datasets/photos", True),
        ("/", False),
        ("/etc", False),
        ("elsewhere/photos", False),
        ("data/../elsewhere", False),
        ("data/escape/etc", False),  # a symbolic link out of the data folder
        ("data", False),  # it holds the uploads (MEDIA_ROOT)
        ("data/media", False),  # the uploads themselves
        ("data/media/uploads/5", False),  # one user's uploads, served to every user
        ("data/mediaeval", True),  # a sibling whose name merely begins the same
        ("relative/path", False),
    ],
)
def test_a_dataset_root_must_lie_in_the_allowed_folders(data_dirs, root, allowed):
    value = root if root.startswith("/") or root == "relative/path" else str(data_dirs / root)
    dataset = Dataset(name="photos", root=value, source=Dataset.Source.IMAGEFOLDER)
    if allowed:
        dataset.full_clean()
    else:
        with pytest.raises(ValidationError) as raised:
            dataset.full_clean()
        assert set(raised.value.message_dict) == {"root"}


def test_the_admin_refuses_a_dataset_root_outside_the_allowed_folders(admin_client, data_dirs):
    root = str(data_dirs / "data" / "photos")
    dataset = Dataset.objects.create(name="photos", root=root, source="imagefolder")

    response = admin_client.post(
        f"/admin/catalog/dataset/{dataset.pk}/change/",
        {"name": "photos", "root": "/", "source": "imagefolder"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert "The root must lie in" in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.root == root


def test_the_admin_does_not_edit_image_paths(admin_client, dataset_imported):
    image = Image.objects.order_by("id").first()
    page = admin_client.get(f"/admin/catalog/image/{image.pk}/change/").content.decode()
    assert 'name="path"' not in page
    assert admin_client.get("/admin/catalog/image/add/").status_code == 403


@pytest.fixture
def served_image(auth_client, dataset_imported, settings):
    """A dataset image that is served; the dataset lies in the one allowed folder."""
    settings.TINYRAG_DATASET_ROOTS = [str(dataset_imported.parent)]
    image = Image.objects.order_by("id").first()
    assert auth_client.get(f"/images/{image.pk}/file/").status_code == 200
    return image


def test_a_root_changed_behind_the_admins_back_serves_no_file(auth_client, served_image):
    Dataset.objects.update(root="/")
    Image.objects.filter(pk=served_image.pk).update(path="proc/self/environ")

    assert auth_client.get(f"/images/{served_image.pk}/file/").status_code == 404
    assert auth_client.get(f"/images/{served_image.pk}/thumb/").status_code == 404


def test_a_path_out_of_its_root_serves_no_file(auth_client, served_image, dataset_imported):
    secret = dataset_imported.parent / "secret.png"
    secret.write_bytes(b"not for users")
    Image.objects.filter(pk=served_image.pk).update(path="../secret.png")

    assert auth_client.get(f"/images/{served_image.pk}/file/").status_code == 404


def test_only_image_files_are_served(auth_client, served_image, dataset_imported):
    (dataset_imported / "settings.env").write_text("SECRET_KEY=not-for-users\n")
    Image.objects.filter(pk=served_image.pk).update(path="settings.env")

    assert auth_client.get(f"/images/{served_image.pk}/file/").status_code == 404


# --- only the proxy reaches gunicorn when the app trusts proxy headers --------------------


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_publishes_the_proxy_alone_when_the_app_trusts_proxy_headers():
    services = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]
    trusting = {
        name for name, service in services.items()
        if environment(service).get("TINYRAG_BEHIND_PROXY", "0").lower() in {"1", "true", "yes"}
    }  # fmt: skip
    publishing = {name for name, service in services.items() if service.get("ports")}

    assert {"web", "worker", "migrate"} <= trusting
    assert publishing == {"proxy"}
    assert services["web"]["expose"] == ["8000"]
    assert services["proxy"]["image"].startswith("nginx:")
    assert environment(services["web"])["TINYRAG_TRUSTED_PROXIES"] == "1"


def test_the_proxy_sets_the_headers_the_app_trusts_and_takes_an_upload():
    services = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]
    mounted = [v.split(":")[0] for v in services["proxy"]["volumes"]]
    assert "./nginx.conf" in mounted
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    assert "server web:8000;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    proxy_limit = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1)) * 2**20
    assert proxy_limit >= body_limit()  # one upload and its fields, as Django accepts them
