"""The page language: the switcher (Django's `set_language`), remembered per account.

How a request's language is chosen (https://docs.djangoproject.com/en/5.2/topics/i18n/translation/#how-django-discovers-language-preference):

1. a signed-in user's saved choice (AccountPreferences.language), activated by
   `UserLanguageMiddleware`, which also refreshes the language cookie to it (so logging in
   applies it, and the pages stay in it after logging out on that browser);
2. else LocaleMiddleware: the language cookie set by the switcher, else the browser's
   Accept-Language, else settings.LANGUAGE_CODE.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.views.i18n import set_language as django_set_language

from tinyrag_site.models import AccountPreferences

LANGUAGE_CODES = frozenset(code for code, _name in settings.LANGUAGES)
FOLLOW_BROWSER = ""  # the `language` value of "follow my browser" (Account page)


def saved_language(user) -> str:
    """The page language `user` chose ("" when they never chose, or chose to follow the
    browser)."""
    if not user.is_authenticated:
        return ""
    language = AccountPreferences.objects.filter(user=user).values_list("language", flat=True)
    code = language.first() or ""
    return code if code in LANGUAGE_CODES else ""


def forget_language(*, user) -> None:
    """`user`'s pages follow the browser again (the language cookie, else Accept-Language)."""
    AccountPreferences.objects.filter(user=user).update(language="")


def save_language(*, user, language: str) -> None:
    """Remember `language` (one of settings.LANGUAGES) as `user`'s page language."""
    if language not in LANGUAGE_CODES:
        raise ValueError(f"{language!r} is not one of settings.LANGUAGES")
    AccountPreferences.objects.update_or_create(user=user, defaults={"language": language})


def set_language_cookie(response: HttpResponse, language: str) -> None:
    """The cookie LocaleMiddleware reads, as Django's set_language view writes it."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


@login_not_required  # visitors switch too
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's set_language (POST `language` and `next`: sets the cookie, redirects to
    `next` when it is on this site, else to the page the form was on, else "/"); a signed-in
    user's choice is also kept with the account, for every browser they log in on."""
    response = django_set_language(request)  # a GET changes nothing and goes to `next`
    language = request.POST.get("language", "")
    if language not in LANGUAGE_CODES:  # Django takes any language it has a catalogue for
        response.cookies.pop(settings.LANGUAGE_COOKIE_NAME, None)
        if language == FOLLOW_BROWSER and request.method == "POST":
            # the Account page's "Follow my browser": no saved choice, no cookie
            if request.user.is_authenticated:
                forget_language(user=request.user)
            response.delete_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
    elif request.method == "POST" and request.user.is_authenticated:
        save_language(user=request.user, language=language)
    return response


class UserLanguageMiddleware:
    """A signed-in user's saved language wins over the cookie and Accept-Language. After
    AuthenticationMiddleware (it reads request.user) and LocaleMiddleware (it overrides what
    that one activated)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user_before = request.user.pk if request.user.is_authenticated else None
        language = saved_language(request.user)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return response
        if user.pk != user_before and _session_user(request) == user.pk:
            # this request logged in: its choice from now on (an API token authenticates
            # one request, within the view: no login, nothing to read)
            language = saved_language(user)
        cookie = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        if (
            language
            and cookie != language
            and settings.LANGUAGE_COOKIE_NAME not in response.cookies
        ):
            set_language_cookie(response, language)
        return response


def _session_user(request: HttpRequest):
    """The primary key of the user this request's session is logged in as (None: none).
    Reads no session row when the request came without a session cookie."""
    session = getattr(request, "session", None)
    if session is None or SESSION_KEY not in session:
        return None
    return request.user._meta.pk.to_python(session[SESSION_KEY])
