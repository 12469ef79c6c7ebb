"""The API's request parsers (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

Its own module, importing nothing of DRF's views: DRF reads this setting while rest_framework.views
is being imported, so a module that imports those views cannot hold it.
"""

from __future__ import annotations

from rest_framework import exceptions, parsers


class SafeJSONParser(parsers.JSONParser):
    """DRF's JSON parser, with every document it cannot decode a ParseError (a 400): DRF's own
    turns only ValueError into one, so 100 kB of `[` (RecursionError) would be a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - the document is nested too deeply."
            ) from None
