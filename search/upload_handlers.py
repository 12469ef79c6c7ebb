"""The first of FILE_UPLOAD_HANDLERS: a multipart body too large for any upload is refused
before it is read, or as soon as it grows past the limit, never spooled to disk whole.

Django has no limit of its own on file data (DATA_UPLOAD_MAX_MEMORY_SIZE counts only the other
fields), nor has gunicorn on bodies. The limit is one upload (TINYRAG_UPLOAD_MAX_BYTES) plus
the form fields (DATA_UPLOAD_MAX_MEMORY_SIZE): a body within it reaches the view, whose size
check (search.services.uploads.check_upload_size) names the file limit to the user. Django
raises RequestDataTooBig as a 400 for pages; the API answers it in its error format.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


def body_limit() -> int:
    """The largest multipart body accepted, in bytes."""
    return settings.TINYRAG_UPLOAD_MAX_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _too_big(limit: int) -> RequestDataTooBig:
    return RequestDataTooBig(f"The request body is larger than {limit / 2**20:.0f} MB.")


class RequestBodyLimitHandler(FileUploadHandler):
    """Refuses from Content-Length, then counts the file data as it streams in."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = body_limit()
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        if content_length > self.limit:
            raise _too_big(self.limit)
        return None  # not handled here: the parser goes on with the next handlers

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:  # the files of one body, all together
            raise _too_big(self.limit)
        return raw_data  # passed on to the handler that stores it

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file object
