"""The database is SQLite by default and PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import os

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_database_backend_follows_database_url():
    url = os.environ.get("DATABASE_URL", "")
    assert connection.vendor == ("postgresql" if url.startswith("postgres") else "sqlite")


def test_json_synonyms_round_trip():
    from search.catalog.models import Dataset, ImageClass

    ds = Dataset.objects.create(name="d", root="/x", source="imagefolder")
    ImageClass.objects.create(dataset=ds, wnid="n1", name="café", names=["café", "coffee, bar"])
    assert ImageClass.objects.get(wnid="n1").names == ["café", "coffee, bar"]
