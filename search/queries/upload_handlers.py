"""The first of FILE_UPLOAD_HANDLERS: a multipart body too large for any upload is refused from
its Content-Length, before any of it is read, never spooled to disk.

Django has no limit of its own on file data (DATA_UPLOAD_MAX_MEMORY_SIZE counts only the other
fields), nor has gunicorn on bodies. The limit is one upload (TINYRAG_UPLOAD_MAX_BYTES) plus
the form fields (DATA_UPLOAD_MAX_MEMORY_SIZE): a body within it reaches the view, whose size
check (search.queries.uploads.check_upload_size) names the file limit to the user. Nothing
needs counting as the body streams in: Django reads no further than CONTENT_LENGTH (its
LimitedStream), and parses a body without one as empty. Django raises RequestDataTooBig as a
400 for pages; the API answers it in its error format.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


def body_limit() -> int:
    """The largest multipart body accepted, in bytes."""
    return settings.TINYRAG_UPLOAD_MAX_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestBodyLimitHandler(FileUploadHandler):
    """Refuses a body whose Content-Length is over body_limit(); passes the rest on."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        limit = body_limit()
        if content_length > limit:
            raise RequestDataTooBig(f"The request body is larger than {limit / 2**20:.0f} MB.")
        return None  # not handled here: the parser goes on with the next handlers

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data  # passed on to the handler that stores it

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file object
