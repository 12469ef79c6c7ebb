"""Accounts: sign-up, log in, log out by POST only, password change, login-required pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_product_pages_redirect_anonymous_users_to_login(client):
    response = client.get(reverse("search:history"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/history/"


def test_a_signed_out_visitor_gets_the_landing_page_not_the_search_form(client):
    response = client.get(reverse("search:home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Find images by what is in them" in page
    assert f'href="{reverse("signup")}"' in page
    assert 'id="search-form"' not in page
    assert "Describe an image" in page  # descriptions are on by default


def test_the_landing_page_promises_no_descriptions_when_they_are_off(client, settings):
    settings.TINYRAG_VLM_BACKEND = "none"
    page = client.get(reverse("search:home")).content.decode()
    assert "Find images by what is in them" in page
    assert "Describe an image" not in page
    assert "vision-language model" not in page


def test_signup_creates_the_user_and_logs_them_in(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "carol",
            "password1": "a-long-unusual-passphrase-9",
            "password2": "a-long-unusual-passphrase-9",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("search:home")
    assert get_user_model().objects.filter(username="carol").exists()
    page = client.get(reverse("search:home"))
    assert page.status_code == 200
    assert "Signed in as <strong>carol</strong>" in page.content.decode()


def test_signup_applies_the_password_validators(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "dave",
            "password1": "12345678",
            "password2": "12345678",
        },
    )
    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    assert not get_user_model().objects.filter(username="dave").exists()


def test_login_page_and_login(client, user, password):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": password})
    assert response.status_code == 302
    assert response["Location"] == reverse("search:home")


def test_wrong_password_is_refused(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_needs_post(auth_client):
    assert auth_client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in auth_client.session
    response = auth_client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in auth_client.session


def test_layout_shows_the_user_and_a_logout_form(auth_client):
    html = auth_client.get(reverse("search:home")).content.decode()
    assert "Signed in as <strong>alice</strong>" in html
    assert f'<form method="post" action="{reverse("logout")}"' in html


def test_password_change(auth_client, user, password):
    response = auth_client.post(
        reverse("password_change"),
        {
            "old_password": password,
            "new_password1": "another-long-passphrase-77",
            "new_password2": "another-long-passphrase-77",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("password_change_done")
    user.refresh_from_db()
    assert user.check_password("another-long-passphrase-77")


def test_collections_lists_imported_datasets(auth_client, prepared_root):
    from django.core.management import call_command

    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0", verbosity=0)
    html = auth_client.get(reverse("search:collections")).content.decode()
    assert ">tiny-imagenet-200</h2>" in html
    # the fixture's split sizes: 20 train, 12 val, 4 test
    assert "<dt>Training</dt><dd>20</dd>" in html
    assert "<dt>Validation</dt><dd>12</dd>" in html
    assert "<dt>Test (no labels)</dt><dd>4</dd>" in html


def test_collections_without_data_names_the_first_missing_step(auth_client, admin_client):
    html = auth_client.get(reverse("search:collections")).content.decode()
    assert "Search is not ready yet: no images have been imported yet." in html
    assert "manage.py bootstrap" not in html  # commands are for whoever runs the server
    staff = admin_client.get(reverse("search:collections")).content.decode()
    assert "manage.py bootstrap" in staff


@pytest.mark.parametrize("model", ["dataset", "imageclass", "image"])
def test_admin_lists_dataset_models_with_search(admin_client, prepared_root, model):
    from django.core.management import call_command

    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0", verbosity=0)
    response = admin_client.get(reverse(f"admin:catalog_{model}_changelist"), {"q": "n02124075"})
    assert response.status_code == 200
    assert 'id="searchbar"' in response.content.decode()


def test_admin_image_filter_by_split(admin_client, prepared_root):
    from django.core.management import call_command

    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0", verbosity=0)
    response = admin_client.get(reverse("admin:catalog_image_changelist"), {"split__exact": "val"})
    assert response.context["cl"].result_count == 12


def test_home_without_data_or_index_names_the_dataset_step_first(admin_client, settings, tmp_path):
    from search.index.service import clear_index_services

    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    html = admin_client.get(reverse("search:home")).content.decode()
    assert "Search is not ready yet: no images have been imported yet." in html
    assert "manage.py bootstrap" in html
    assert "build_index" not in html  # not the index: the dataset is what is missing first


def test_collections_page_title_is_plain_text(auth_client):
    html = auth_client.get(reverse("search:collections")).content.decode()
    assert "<title>Collections · TinyRAG</title>" in html
    assert html.count("<h1>Collections</h1>") == 1


# --- the API token: regenerating it asks first -----------------------------------------------


def test_regenerate_token_asks_first_and_its_get_changes_nothing(auth_client, user):
    from rest_framework.authtoken.models import Token

    profile = auth_client.get(reverse("profile")).content.decode()
    old = Token.objects.get(user=user)
    confirm = f"{reverse('profile')}?confirm=regenerate"
    assert f'href="{confirm}"' in profile  # the button is a link to the confirm step
    assert '<form method="post" action="/accounts/profile/" class="inline">' not in profile
    response = auth_client.get(confirm)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Regenerate your API token?" in html
    assert "stops working at once" in html
    assert f"created {old.created:%-d %b %Y}" in html
    assert (
        f'href="{reverse("profile")}" class="button secondary" data-confirm-cancel>Cancel' in html
    )
    assert Token.objects.get(user=user).key == old.key  # the GET changed nothing
    auth_client.get(confirm, HTTP_HX_REQUEST="true")
    assert Token.objects.get(user=user).key == old.key
    response = auth_client.post(reverse("profile"), follow=True)
    assert "The old one no longer works" in response.content.decode()
    assert Token.objects.get(user=user).key != old.key


def test_regenerate_token_in_place_with_htmx_is_the_panel_alone(auth_client, user):
    auth_client.get(reverse("profile"))
    html = auth_client.get(
        reverse("profile"), {"confirm": "regenerate"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert html.lstrip().startswith('<section class="card confirm-panel"')
    assert "<html" not in html
    assert '<form method="post" action="/accounts/profile/" class="inline">' in html


def test_the_old_token_stops_working_once_regenerated(auth_client, user, client):
    from django.test import Client
    from rest_framework.authtoken.models import Token

    auth_client.get(reverse("profile"))
    old = Token.objects.get(user=user).key
    api = Client()
    assert api.get("/api/v1/queries/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 200
    auth_client.post(reverse("profile"))
    assert api.get("/api/v1/queries/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    new = Token.objects.get(user=user).key
    assert api.get("/api/v1/queries/", HTTP_AUTHORIZATION=f"Token {new}").status_code == 200
