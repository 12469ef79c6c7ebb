"""WSGI entry point (gunicorn tinyrag_site.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyrag_site.settings")
application = get_wsgi_application()
