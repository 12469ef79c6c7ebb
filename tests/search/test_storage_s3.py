"""Uploads in an S3-compatible bucket (TINYRAG_S3_BUCKET) through django-storages.

Against moto's S3 server on 127.0.0.1: a real HTTP S3 API, spoken to by boto3 as it would speak
to AWS or MinIO; nothing in the product is patched.
"""

from __future__ import annotations

import io

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto.server import ThreadedMotoServer
from PIL import Image as PILImage
from rest_framework.test import APIClient

from search.queries.models import SearchQuery
from tinyrag_site.settings import STORAGES, s3_storage

BUCKET = "tinyrag-test-media"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_media(s3_endpoint, settings, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **STORAGES,
        "default": s3_storage(BUCKET, endpoint_url=s3_endpoint, region="us-east-1", prefix="media"),
    }
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def jpeg() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (40, 30), (200, 180, 20)).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.django_db
def test_an_upload_lands_privately_in_the_bucket_and_is_served_back(
    search_index, s3_media, user, api_token
):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    image = SimpleUploadedFile("lemon.jpg", jpeg(), content_type="image/jpeg")
    response = api.post("/api/v1/search/image", {"image": image}, format="multipart")
    assert response.status_code == 201, response.content

    query = SearchQuery.objects.get(pk=response.json()["id"])
    key = f"media/{query.uploaded_image.name}"
    assert query.uploaded_image.name.startswith(f"uploads/{user.pk}/")
    stored = s3_media.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert stored.startswith(b"\xff\xd8")  # a JPEG: the upload re-encoded as a JPEG
    # private: the bucket grants nothing to anonymous readers
    grants = s3_media.get_object_acl(Bucket=BUCKET, Key=key)["Grants"]
    assert not [g for g in grants if g["Grantee"].get("URI", "").endswith("AllUsers")]

    served = api.get(response.json()["uploaded_image_url"])
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == stored
