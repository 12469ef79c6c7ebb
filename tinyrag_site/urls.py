"""TinyRAG URL configuration."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.decorators.cache import never_cache
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from search.ops import views as health
from tinyrag_site import accounts, language

account_patterns = [
    # Account pages are never stored by a browser or a proxy (OWASP Session Management): the
    # login view and the password pages come with no-store, like the profile's token page.
    path("signup/", never_cache(accounts.signup), name="signup"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/change/",
        never_cache(accounts.PasswordChangeView.as_view()),
        name="password_change",
    ),
    path(
        "password/change/done/",
        never_cache(auth_views.PasswordChangeDoneView.as_view()),
        name="password_change_done",
    ),
    path("profile/", accounts.profile, name="profile"),
]

# The admin's login goes through the same throttle (ThrottledModelBackend) and says so.
admin.site.login_form = accounts.ThrottledAdminAuthenticationForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/", include(account_patterns)),
    # Django's set_language (django.conf.urls.i18n's one route, at the same address), open
    # to visitors and kept with the account of a signed-in user: tinyrag_site/language.py
    path("i18n/setlang/", language.set_language, name="set_language"),
    path("admin/", admin.site.urls),
    # DRF authenticates API requests itself (session or token) and answers 401/403 in the API's
    # error format, so the login-redirecting middleware stands aside for these.
    path("api/v1/", include("search.api_urls")),
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path(
        "api/docs/",
        # the split view serves its script as a file: no inline <script> under the CSP
        login_not_required(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", template_name="api/swagger_ui.html"
            )
        ),
        name="api-docs",
    ),
    path("evaluation/", include("evaluation.urls")),
    path("", include("search.urls")),
]

handler404 = "tinyrag_site.errors.page_not_found"
handler500 = "tinyrag_site.errors.server_error"
