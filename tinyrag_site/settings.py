"""TinyRAG settings: read from the environment once, with typed defaults.

A `.env` file in the project folder is read first (python-dotenv; the real environment wins
over it), so manage.py, runserver, gunicorn, wsgi and asgi all see the same configuration.
Every variable is listed with a comment and its default in `.env.example`
(tests/tinyrag_site/test_env_example.py compares the two). Production (DEBUG off) refuses to
start without SECRET_KEY.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

# KEY=value lines that fill in what the environment does not set (the environment wins).
# TINYRAG_ENV_FILE itself is read from the environment only: another file, or "" for none.
# https://saurabh-kumar.com/python-dotenv/#load-configuration-without-altering-the-environment
ENV_FILE = os.environ.get("TINYRAG_ENV_FILE", ".env")
if ENV_FILE:
    load_dotenv(BASE_DIR / Path(ENV_FILE).expanduser(), override=False)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    path = Path(raw).expanduser() if raw else default
    return path if path.is_absolute() else (BASE_DIR / path)


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (see .env.example), "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Where datasets, the SQLite database and uploads live; published indexes live apart so they
# can sit on faster storage.
TINYRAG_DATA_DIR = env_path("TINYRAG_DATA_DIR", BASE_DIR / "data")
TINYRAG_INDEX_DIR = env_path("TINYRAG_INDEX_DIR", BASE_DIR / "vector_db")
# Other directories that dataset roots may lie in (comma-separated, absolute), besides
# TINYRAG_DATA_DIR: the app serves any image file under a dataset's root
# (search/catalog/datasets/roots.py).
TINYRAG_DATASET_ROOTS = env_list("TINYRAG_DATASET_ROOTS", [])

INSTALLED_APPS = [
    # First: its commands replace two of the apps' below (an earlier app's command name wins):
    # `runserver` (staticfiles') that warms the models up in the background, and `db_worker`
    # (django_tasks_db's) that outlives a locked or restarting database.
    "search.ops",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_tasks_db",
    "tinyrag_site",
    "search",
    "search.catalog",
    "search.index",
    "search.queries",
    "search.descriptions",
    "evaluation",
]

MIDDLEWARE = [
    "tinyrag_site.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below)
    "csp.middleware.CSPMiddleware",
    # static files straight from the app server, compressed and cache-busted
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # the page language: cookie, else Accept-Language (after sessions, before common)
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # a signed-in user's saved page language wins over the cookie and Accept-Language
    "tinyrag_site.language.UserLanguageMiddleware",
    # Every page requires login unless its view is marked @login_not_required.
    # https://docs.djangoproject.com/en/5.2/ref/middleware/#django.contrib.auth.middleware.LoginRequiredMiddleware
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # dates in the viewer's time zone (the browser's, from the `tz` cookie)
    "tinyrag_site.timezones.TimezoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "tinyrag_site.urls"
CSRF_FAILURE_VIEW = "tinyrag_site.errors.csrf_failure"
WSGI_APPLICATION = "tinyrag_site.wsgi.application"
ASGI_APPLICATION = "tinyrag_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",  # LANGUAGE_CODE, LANGUAGES
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Absent DATABASE_URL = a zero-set-up SQLite file in the data folder.
# https://github.com/jazzband/dj-database-url#url-schema
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    TINYRAG_DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{TINYRAG_DATA_DIR / 'tinyrag.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web workers and the task worker write the same file: take the write lock when a
    # transaction begins (not halfway, where SQLite fails at once with "database is locked"),
    # and wait up to TINYRAG_SQLITE_TIMEOUT seconds for it. Write-ahead logging lets one
    # process write while others read (with a rollback journal a long read holds writers
    # off); NORMAL sync is safe with WAL.
    # https://docs.djangoproject.com/en/5.2/ref/databases/#setting-pragma-options
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("TINYRAG_SQLITE_TIMEOUT", 20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (tinyrag_site/accounts.py): failed logins allowed for one (username, client
# address) pair within the window (seconds), after which that pair alone is refused until the
# window ends; and a much higher ceiling of failures per client address, whatever the username.
TINYRAG_LOGIN_FAILURE_LIMIT = env_int("TINYRAG_LOGIN_FAILURE_LIMIT", 5)
TINYRAG_LOGIN_FAILURE_WINDOW = env_int("TINYRAG_LOGIN_FAILURE_WINDOW", 15 * 60)
TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT", 100)
# Login attempts per client address, right or wrong (each costs a password hash), and new
# accounts per client address (each brings its own rates and queue places).
TINYRAG_LOGIN_RATE = env_str("TINYRAG_LOGIN_RATE", "60/minute")
TINYRAG_SIGNUP_RATE = env_str("TINYRAG_SIGNUP_RATE", "5/hour")
AUTHENTICATION_BACKENDS = ["tinyrag_site.accounts.ThrottledModelBackend"]
# Reverse proxies in front of the app that append to X-Forwarded-For (nginx in
# deploy/compose.yaml: 1). 0 = the client is REMOTE_ADDR and X-Forwarded-For is ignored, since
# anyone can send it. https://docs.djangoproject.com/en/5.2/ref/request-response/#django.http.HttpRequest.get_host
TINYRAG_TRUSTED_PROXIES = env_int("TINYRAG_TRUSTED_PROXIES", 0)

# Shared state of every web worker and machine (login throttles, rate limits): the database
# cache by default (`manage.py migrate` creates its table: tinyrag_site/signals.py; nothing else
# to run), `redis://host:6379/0` for many machines. tinyrag_site.cache.DatabaseCache is Django's
# with an atomic incr() and an add() that does not count the whole table.
# https://docs.djangoproject.com/en/5.2/topics/cache/
TINYRAG_CACHE_URL = env_str("TINYRAG_CACHE_URL", "db://tinyrag_cache")


def cache_from_url(url: str) -> dict:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    if url.startswith("db://"):
        return {"BACKEND": "tinyrag_site.cache.DatabaseCache", "LOCATION": url[len("db://") :]}
    raise ImproperlyConfigured(
        f"TINYRAG_CACHE_URL={url!r}: use db://<table> (the default) or redis://host:port/db."
    )


CACHES = {"default": cache_from_url(TINYRAG_CACHE_URL)}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "search:home"
LOGOUT_REDIRECT_URL = "login"

# Pages in English or Bahasa Indonesia (search/languages.py): a signed-in user's own choice,
# else the language cookie set by the switcher, else the browser's Accept-Language.
# https://docs.djangoproject.com/en/5.2/topics/i18n/translation/#how-django-discovers-language-preference
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("id", "Bahasa Indonesia")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates and times in the page language's formats: Django's own for Indonesian ("17 Agu 2024,
# 17.05"); for English, TinyRAG's day-month-year and 24-hour clock (tinyrag_site/formats/en).
# Templates write `|date:"DATETIME_FORMAT"` (or DATE_FORMAT, TIME_FORMAT), never a pattern.
# https://docs.djangoproject.com/en/5.2/topics/i18n/formatting/#creating-custom-format-files
FORMAT_MODULE_PATH = ["tinyrag_site.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
# Hashed, compressed static files in production (run `manage.py collectstatic`).
# https://whitenoise.readthedocs.io/en/stable/django.html
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("TINYRAG_STATIC_MANIFEST", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", TINYRAG_DATA_DIR / "media")


def s3_storage(bucket: str, *, endpoint_url: str = "", region: str = "", prefix: str = "") -> dict:
    """Uploads in an S3-compatible bucket (AWS, MinIO, Ceph, R2...) through django-storages
    (`pip install -e '.[s3]'`). Objects stay private: the app serves them itself, after its
    ownership check. Credentials come from the usual AWS_* variables or an instance role.
    https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html"""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "location": prefix,
            "default_acl": None,  # the bucket's policy: private
            "file_overwrite": False,
        },
    }


# Media on disk under MEDIA_ROOT, or in a bucket when TINYRAG_S3_BUCKET is set.
if env_str("TINYRAG_S3_BUCKET"):
    STORAGES["default"] = s3_storage(
        env_str("TINYRAG_S3_BUCKET"),
        endpoint_url=env_str("TINYRAG_S3_ENDPOINT_URL"),
        region=env_str("TINYRAG_S3_REGION"),
        prefix=env_str("TINYRAG_S3_PREFIX", "media"),
    )

# HTTPS hardening: on by default in production, off for local development over plain HTTP.
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/#https
TINYRAG_HTTPS = env_bool("TINYRAG_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = TINYRAG_HTTPS
SESSION_COOKIE_SECURE = TINYRAG_HTTPS
CSRF_COOKIE_SECURE = TINYRAG_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365 if TINYRAG_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = TINYRAG_HTTPS
SECURE_HSTS_PRELOAD = TINYRAG_HTTPS
# Behind a TLS-terminating proxy (nginx, a load balancer) that sets X-Forwarded-Proto.
if env_bool("TINYRAG_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts, styles and everything else from this origin
# only; no inline script, handler or style anywhere (pages, HTMX, charts as <img>, API docs).
# https://cheatsheetseries.owasp.org/cheatsheets/Content_Security_Policy_Cheat_Sheet.html
# https://django-csp.readthedocs.io/en/latest/configuration.html
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# JSON lines with a request id in production (for log collectors), plain text in development.
TINYRAG_LOG_FORMAT = env_str("TINYRAG_LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "tinyrag_site.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "tinyrag_site.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": TINYRAG_LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # faiss logs every instruction set it tries at import
    "loggers": {"faiss.loader": {"level": "WARNING"}},
}

# --- Models -------------------------------------------------------------------------------
# Each id is a Hugging Face hub id or a local directory in the same layout.
TINYRAG_CLIP_MODEL = env_str("TINYRAG_CLIP_MODEL", "sentence-transformers/clip-ViT-B-32")
# The multilingual text encoder for queries not in English (search/queries/routing.py),
# distilled into CLIP ViT-B/32's space; it must match TINYRAG_CLIP_MODEL. Empty = every query
# goes to CLIP's own (English) text tower. https://www.sbert.net/examples/sentence_transformer/applications/image-search/README.html
TINYRAG_TEXT_MODEL = env_str(
    "TINYRAG_TEXT_MODEL", "sentence-transformers/clip-ViT-B-32-multilingual-v1"
)
# The translation model of the translate route (MarianMT, source -> English); fetched by
# setup_models only when TINYRAG_TEXT_ROUTE=translate. TRANSLATE_LANGUAGES: its source languages.
TINYRAG_TRANSLATE_MODEL = env_str("TINYRAG_TRANSLATE_MODEL", "Helsinki-NLP/opus-mt-id-en")
TINYRAG_TRANSLATE_LANGUAGES = env_list("TINYRAG_TRANSLATE_LANGUAGES", ["id"])
TINYRAG_DEVICE = env_str("TINYRAG_DEVICE", "auto")  # auto | cpu | cuda | mps
TINYRAG_EMBED_BATCH_SIZE = env_int("TINYRAG_EMBED_BATCH_SIZE", 64)
# bf16 where the hardware supports it (3x faster on AVX-512-bf16 CPUs, cosine >= 0.9999 to fp32).
TINYRAG_FORCE_FP32 = env_bool("TINYRAG_FORCE_FP32", False)
# Where setup_models puts downloaded weights (empty = the Hugging Face cache, HF_HOME).
TINYRAG_MODEL_DIR = env_str("TINYRAG_MODEL_DIR", "")

# --- Index --------------------------------------------------------------------------------
# The published index that searches use (a folder name under TINYRAG_INDEX_DIR).
TINYRAG_INDEX_NAME = env_str("TINYRAG_INDEX_NAME", "tiny-imagenet-200")
# FAISS search threads (0 = FAISS's default: every core).
TINYRAG_FAISS_THREADS = env_int("TINYRAG_FAISS_THREADS", 0)
# build_index --index-type auto: exact search up to this many vectors; above it HNSW when its
# recall@10 against exact search, measured at build time on a sample of the collection's own
# vectors, reaches TINYRAG_HNSW_MIN_RECALL (in percent), else exact (IVF-PQ when memory is short).
TINYRAG_HNSW_MIN_VECTORS = env_int("TINYRAG_HNSW_MIN_VECTORS", 20_000)
TINYRAG_HNSW_MIN_RECALL = env_int("TINYRAG_HNSW_MIN_RECALL", 99)

# --- Search -------------------------------------------------------------------------------
TINYRAG_TOP_K_DEFAULT = env_int("TINYRAG_TOP_K_DEFAULT", 10)
TINYRAG_TOP_K_MAX = env_int("TINYRAG_TOP_K_MAX", 100)
# Micro-batching (search.queries.microbatch): concurrent queries in one web process are
# embedded and searched together, up to BATCH_MAX at once; a batch waits at most BATCH_WAIT_MS
# for more once queries are arriving faster than they are served (a lone query never waits).
# TINYRAG_BATCH_MAX=1 turns it off (every query alone, as before).
TINYRAG_BATCH_MAX = env_int("TINYRAG_BATCH_MAX", 16)
TINYRAG_BATCH_WAIT_MS = env_int("TINYRAG_BATCH_WAIT_MS", 5)
# CLIP was trained on captions: "a photo of a {query}." retrieves better than the bare words.
# Applied with CLIP's own text tower; a TINYRAG_TEXT_MODEL encoder gets the query's subject.
TINYRAG_TEXT_PROMPT = env_str("TINYRAG_TEXT_PROMPT", "a photo of a {query}.")
# How queries not in English are embedded: "multilingual" (TINYRAG_TEXT_MODEL), "translate"
# (TINYRAG_TRANSLATE_MODEL to English, then CLIP with the prompt; languages it does not
# translate take the multilingual route) or "clip" (CLIP's English tower for every query).
# Multilingual is the default: README "Queries in Bahasa Indonesia" gives the figures.
TINYRAG_TEXT_ROUTE = env_str("TINYRAG_TEXT_ROUTE", "multilingual").strip().lower()
if TINYRAG_TEXT_ROUTE not in {"multilingual", "translate", "clip"}:
    raise ImproperlyConfigured(
        f"TINYRAG_TEXT_ROUTE={TINYRAG_TEXT_ROUTE!r}: use multilingual, translate or clip."
    )
# Translation: beams (1 = greedy) and at most this many tokens out per query.
TINYRAG_TRANSLATE_BEAMS = env_int("TINYRAG_TRANSLATE_BEAMS", 4)
TINYRAG_TRANSLATE_MAX_TOKENS = env_int("TINYRAG_TRANSLATE_MAX_TOKENS", 64)
TINYRAG_UPLOAD_MAX_BYTES = env_int("TINYRAG_UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
# Decompression bombs: a small file that decodes to a huge bitmap is refused before decoding.
TINYRAG_UPLOAD_MAX_PIXELS = env_int("TINYRAG_UPLOAD_MAX_PIXELS", 40_000_000)
# CLIP scales the shorter side to 224, so a long thin image grows to gigabytes: refused from its
# header when a side is longer than MAX_SIDE or more than MAX_ASPECT times the other side.
TINYRAG_UPLOAD_MAX_SIDE = env_int("TINYRAG_UPLOAD_MAX_SIDE", 8192)
TINYRAG_UPLOAD_MAX_ASPECT = env_int("TINYRAG_UPLOAD_MAX_ASPECT", 20)
# Every accepted upload is shrunk to fit this square before it is embedded and stored.
TINYRAG_UPLOAD_RESIZE_SIDE = env_int("TINYRAG_UPLOAD_RESIZE_SIDE", 1024)
TINYRAG_UPLOAD_DECODE_SLOTS = env_int("TINYRAG_UPLOAD_DECODE_SLOTS", 2)  # per process
# Request bodies: form fields and JSON (a few kB here) up to 1 MB; file data past 2.5 MB spools
# to a temporary file; a multipart body over one upload plus its fields is refused from its
# Content-Length, before it is read (search/queries/upload_handlers.py).
# https://docs.djangoproject.com/en/5.2/ref/settings/#data-upload-max-memory-size
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = [
    "search.queries.upload_handlers.RequestBodyLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Rate limits (per user, shared by every web worker: tinyrag_site/throttling.py) -----------
# "N/second|minute|hour|day". api: every API request; search: searches, similar searches and
# re-runs, on the pages and the API together; describe: description requests, the same way.
TINYRAG_API_RATE = env_str("TINYRAG_API_RATE", "120/minute")
TINYRAG_SEARCH_RATE = env_str("TINYRAG_SEARCH_RATE", "60/minute")
TINYRAG_DESCRIBE_RATE = env_str("TINYRAG_DESCRIBE_RATE", "20/minute")

# --- API ----------------------------------------------------------------------------------
# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Counted in the shared cache, per user (per address before login): tinyrag_site/throttling.py
    "DEFAULT_THROTTLE_CLASSES": ["tinyrag_site.throttling.ApiRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "search.web.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's parsers, with a JSON one that answers any undecodable document (100 kB of "[")
    # with a 400: a session's CSRF check parses the body of every POST, whatever the view reads.
    "DEFAULT_PARSER_CLASSES": [
        "search.web.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TinyRAG API",
    "DESCRIPTION": "Multimodal image search with retrieval-augmented descriptions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DescriptionContextEnum": "search.descriptions.models.Description.Context",
        "DescriptionStatusEnum": "search.descriptions.models.Description.Status",
    },
}

# --- Descriptions (retrieval-augmented generation) ----------------------------------------
# transformers: Qwen2-VL in the worker process; openai: any OpenAI-compatible chat-completions
# server (vLLM, SGLang, Ollama); none: descriptions disabled.
TINYRAG_VLM_BACKEND = env_str("TINYRAG_VLM_BACKEND", "transformers")
TINYRAG_VLM_MODEL = env_str("TINYRAG_VLM_MODEL", "Qwen/Qwen2-VL-2B-Instruct")
TINYRAG_VLM_URL = env_str("TINYRAG_VLM_URL", "http://127.0.0.1:8001/v1")
TINYRAG_VLM_API_KEY = env_str("TINYRAG_VLM_API_KEY", "")
# Model name the OpenAI-compatible server knows (default: TINYRAG_VLM_MODEL).
TINYRAG_VLM_SERVED_MODEL = env_str("TINYRAG_VLM_SERVED_MODEL", "")
TINYRAG_VLM_TIMEOUT = env_int("TINYRAG_VLM_TIMEOUT", 120)  # seconds without a token
TINYRAG_VLM_MAX_NEW_TOKENS = env_int("TINYRAG_VLM_MAX_NEW_TOKENS", 128)
TINYRAG_VLM_MIN_NEW_TOKENS = env_int("TINYRAG_VLM_MIN_NEW_TOKENS", 0)
# int8 weights (weight-only, per channel) for the decode steps on CPUs running bf16: a token
# reads half the bytes. Measured 1.98x the fp16 original's whole request, against 1.26x for
# plain bf16, for +1.5 GiB (benchmarks/generate_speed.py). Off: 0. No effect on GPUs/fp32.
TINYRAG_VLM_INT8_DECODE = env_bool("TINYRAG_VLM_INT8_DECODE", True)
# A 64x64 image is only 4 visual tokens to Qwen2-VL (28-pixel patches after merging);
# resizing to 224x224 gives it 64. Pixel bounds for the image processor:
TINYRAG_VLM_MIN_PIXELS = env_int("TINYRAG_VLM_MIN_PIXELS", 224 * 224)
TINYRAG_VLM_MAX_PIXELS = env_int("TINYRAG_VLM_MAX_PIXELS", 448 * 448)
# Neighbours whose labels become the context of a description.
TINYRAG_RAG_K = env_int("TINYRAG_RAG_K", 5)
# Descriptions one user may have queued or generating at once; the next request is a 429.
TINYRAG_DESCRIPTION_PENDING_MAX = env_int("TINYRAG_DESCRIPTION_PENDING_MAX", 3)
# Generations waiting in the whole queue, all users together; the next request is a 429.
TINYRAG_DESCRIPTION_QUEUE_MAX = env_int("TINYRAG_DESCRIPTION_QUEUE_MAX", 100)
# A description with no progress for this long is retried once, then marked failed.
TINYRAG_DESCRIPTION_STALL_SECONDS = env_int("TINYRAG_DESCRIPTION_STALL_SECONDS", 300)
# An evaluation run that records no progress for this long has lost its worker: it is failed.
TINYRAG_EVALUATION_STALL_SECONDS = env_int("TINYRAG_EVALUATION_STALL_SECONDS", 900)
# A collection sync (search/index/sync.py) that records no progress for this long has lost its
# worker: it is failed, and a schedule it belonged to queues the next.
TINYRAG_SYNC_STALL_SECONDS = env_int("TINYRAG_SYNC_STALL_SECONDS", 900)
# A shard of a distributed build (build_index --distributed) whose worker records no progress
# for this long has lost its worker: it is queued again for another (3 attempts in all).
TINYRAG_SHARD_STALL_SECONDS = env_int("TINYRAG_SHARD_STALL_SECONDS", 120)
# Where builds keep their embedded shards until they publish (default: TINYRAG_INDEX_DIR/.builds).
# A distributed build's workers on other machines need it on storage they all share.
TINYRAG_SHARD_DIR = env_str("TINYRAG_SHARD_DIR", "")

# Background work: Django's Tasks API (django-tasks backport on 5.2). `db` (the default): the
# database backend and its `manage.py db_worker`, nothing else to run. `rq`: RQ on Redis
# (django-tasks-rq; `manage.py rqworker`), its queue at TINYRAG_REDIS_URL. Or a backend's path.
# `manage.py worker` starts whichever worker the backend needs.
# https://github.com/RealOrangeOne/django-tasks https://github.com/RealOrangeOne/django-tasks-rq
TASK_BACKENDS = {"db": "django_tasks_db.DatabaseBackend", "rq": "django_tasks_rq.RQBackend"}
TINYRAG_TASKS_BACKEND = env_str("TINYRAG_TASKS_BACKEND", "db")
TASKS = {
    "default": {
        "BACKEND": TASK_BACKENDS.get(TINYRAG_TASKS_BACKEND, TINYRAG_TASKS_BACKEND),
        "QUEUES": ["default"],
    }
}
# The RQ backend's Redis. Its own database number, not the cache's: cache.clear() empties the
# cache's whole Redis database, which would drop the queued tasks with it.
TINYRAG_REDIS_URL = env_str("TINYRAG_REDIS_URL", "")
if TASKS["default"]["BACKEND"].startswith("django_tasks_rq."):
    if not TINYRAG_REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"TINYRAG_TASKS_BACKEND={TINYRAG_TASKS_BACKEND} keeps its queue in Redis: set "
            f"TINYRAG_REDIS_URL=redis://host:6379/1 (got {TINYRAG_REDIS_URL!r}), a database "
            "number other than TINYRAG_CACHE_URL's."
        )
    INSTALLED_APPS.append("django_rq")  # after search.ops, whose `rqworker` warms up first
    # No RQ time limit (-1): a job's own heartbeat and stall period (search/ops/jobs.py) decide
    # when it is lost; an evaluation of a large dataset runs far past RQ's default 180 s.
    RQ_QUEUES = {"default": {"URL": TINYRAG_REDIS_URL, "DEFAULT_TIMEOUT": -1}}
    # The tasks' Job class; SimpleWorker runs each job in the worker's own process, where the
    # warm-up loaded the models (RQ's default Worker forks a fresh child per job).
    RQ = {"JOB_CLASS": "django_tasks_rq.Job", "WORKER_CLASS": "rq.worker.SimpleWorker"}
