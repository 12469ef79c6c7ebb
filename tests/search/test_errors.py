"""One error base: every domain error is an ApplicationError, and the API and the pages each
turn one into an answer from its code and status alone."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from evaluation.config import EvaluationError
from search.catalog.datasets import DatasetError
from search.descriptions.services import (
    DescriptionQueueFull,
    DescriptionsDisabled,
    GenerationCancelled,
    NoSuchSubject,
)
from search.errors import ApplicationError, InvalidInput
from search.index.build import BuildError
from search.index.service import IndexMismatchError, SearchIndexError
from search.ml.errors import DeviceError, ModelError, ModelLoadError
from search.queries.services import NoSuchImage, SearchInputError
from search.queries.uploads import UploadError
from search.web.api_errors import exception_handler
from search.web.pages import show_error

DOMAIN_ERRORS = {  # error -> (code, HTTP status), as the API documents them
    SearchInputError: ("invalid", 400),
    UploadError: ("invalid", 400),
    EvaluationError: ("invalid", 400),
    NoSuchImage: ("not_found", 404),
    NoSuchSubject: ("not_found", 404),
    DescriptionsDisabled: ("disabled", 409),
    GenerationCancelled: ("cancelled", 410),
    DescriptionQueueFull: ("throttled", 429),
    SearchIndexError: ("unavailable", 503),
    IndexMismatchError: ("unavailable", 503),
    ModelError: ("unavailable", 503),
    DeviceError: ("unavailable", 503),
    DatasetError: ("dataset", 400),
    BuildError: ("build", 400),
}


@pytest.mark.parametrize(("error", "expected"), DOMAIN_ERRORS.items(), ids=lambda e: str(e))
def test_every_domain_error_is_an_application_error_with_its_code_and_status(error, expected):
    assert issubclass(error, ApplicationError)
    assert (error.code, error.status) == expected


def test_the_api_answers_any_application_error_with_its_own_code_and_status():
    class Teapot(ApplicationError):  # an error the handler has never heard of
        code, status = "teapot", 418

    response = exception_handler(Teapot("I am a teapot."), {})
    assert (response.status_code, response.data) == (
        418,
        {"error": {"code": "teapot", "message": "I am a teapot."}},
    )


def test_an_api_429_goes_through_drf_throttled_with_retry_after():
    response = exception_handler(DescriptionQueueFull("Wait for one to finish."), {})
    assert response.status_code == 429
    assert response["Retry-After"] == str(DescriptionQueueFull.retry_after)
    assert response.data["error"]["code"] == "throttled"
    assert response.data["error"]["message"].startswith("Wait for one to finish.")


def test_an_api_404_reads_like_every_other_not_found():
    response = exception_handler(NoSuchImage("No image with id 7."), {})
    assert (response.status_code, response.data) == (
        404,
        {"error": {"code": "not_found", "message": "No image with id 7."}},
    )


def test_a_model_load_error_is_a_503_naming_the_setting():
    error = ModelLoadError("org/model", "TINYRAG_CLIP_MODEL", "not cached")
    response = exception_handler(error, {})
    assert response.status_code == 503
    assert "TINYRAG_CLIP_MODEL" in response.data["error"]["message"]


def _page_request():
    request = RequestFactory().post("/somewhere/")
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_a_page_shows_an_error_as_a_message_on_the_page_it_came_from():
    request = _page_request()
    response = show_error(request, InvalidInput("Type a shorter text."), back="/history/")
    assert (response.status_code, response["Location"]) == (302, "/history/")
    assert [str(m) for m in get_messages(request)] == ["Type a shorter text."]


def test_a_page_shows_a_not_found_error_as_a_message_too():
    """A page's URL names something that exists (a query); what the form asked for is not
    there: the user stays on their page, told why."""
    request = _page_request()
    response = show_error(request, NoSuchImage("No image with id 7."), back="/history/1/")
    assert (response.status_code, response["Location"]) == (302, "/history/1/")
    assert [str(m) for m in get_messages(request)] == ["No image with id 7."]
