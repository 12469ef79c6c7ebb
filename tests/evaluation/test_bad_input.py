"""The staff run form: out-of-range numbers are a 400 with the reason, never a 500 or a run;
so are choices that cannot work (the unlabelled test split, an index that is not published)."""

from __future__ import annotations

import pytest

from evaluation.models import EvaluationRun

pytestmark = pytest.mark.django_db

LIST_URL = "/evaluation/"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seed", str(10**20), "Ensure this value is less than or equal to 2147483647."),
        ("seed", str(-(2**31) - 1), "Ensure this value is greater than or equal to -2147483648."),
        ("sample", str(10**20), "Ensure this value is less than or equal to 2147483647."),
        ("ks", "1,5,1000000000", "k values must be positive integers up to 100"),
        ("ks", "1,101", "k values must be positive integers up to 100"),
    ],
)
def test_an_out_of_range_number_is_refused_with_the_reason(
    published_catalog, admin_client, settings, field, value, message
):
    form = {
        "mode": "image", "index_name": settings.TINYRAG_INDEX_NAME, "split": "val", "sample": "",
        "rag_sample": 50, "seed": 0, "ks": "1,5", "rag_contexts": ["retrieved"],
    }  # fmt: skip
    response = admin_client.post(LIST_URL, {**form, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not EvaluationRun.objects.exists()


def test_the_bounds_themselves_are_accepted(published_catalog, admin_client, settings):
    form = {
        "mode": "image", "index_name": settings.TINYRAG_INDEX_NAME, "split": "val",
        "sample": 2**31 - 1, "rag_sample": 50, "seed": -(2**31), "ks": "1,100",
        "rag_contexts": ["retrieved"],
    }  # fmt: skip
    response = admin_client.post(LIST_URL, form)
    assert response.status_code == 302
    run = EvaluationRun.objects.get()
    assert (run.seed, run.configuration["ks"], run.configuration["sample"]) == (
        -(2**31),
        [1, 100],
        2**31 - 1,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("split", "test"), ("index_name", "nowhere"), ("mode", "everything"), ("split", "../x")],
)
def test_a_choice_the_form_does_not_offer_is_refused(
    published_catalog, admin_client, settings, field, value
):
    form = {
        "mode": "image", "index_name": settings.TINYRAG_INDEX_NAME, "split": "val",
        "sample": 10, "seed": 0, "ks": "1,5",
    }  # fmt: skip
    response = admin_client.post(LIST_URL, {**form, field: value})
    assert response.status_code == 400
    assert f"{value} is not one of the available choices" in response.content.decode()
    assert not EvaluationRun.objects.exists()
