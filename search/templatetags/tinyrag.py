"""Template filters of the site's pages (`{% load tinyrag %}`)."""

from __future__ import annotations

import base64

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from search import languages
from search.ml.names import display_model_id

register = template.Library()


@register.filter
def language_name(code: str) -> str:
    """A language code's name in the page language ("Bahasa Indonesia", "German")."""
    return languages.language_name(code)


@register.filter
def model_name(model_id: str | None) -> str:
    """A model id as the pages show it: a hub id, or a local directory's name, never its path."""
    return display_model_id(model_id or "")


@register.filter
def svg_data_uri(svg: str) -> str:
    """An inline SVG as an <img src>: matplotlib's SVGs style themselves with style attributes
    and a <style> element, which the Content-Security-Policy (style-src 'self') blocks in the
    page but not inside an image."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


@register.simple_tag(takes_context=True)
def nav_link(context, url_name: str, label: str, *, exact: bool = False) -> str:
    """A main-navigation link, marked aria-current="page" where the page is under it."""
    url = reverse(url_name)
    request = context.get("request")
    path = request.path if request else ""
    current = path == url if exact else path.startswith(url)
    attrs = ' aria-current="page"' if current else ""
    return format_html('<a href="{}"{}>{}</a>', url, mark_safe(attrs), label)
