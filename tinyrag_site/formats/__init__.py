"""Date and time formats per page language (settings.FORMAT_MODULE_PATH); a language without
a module here uses Django's own (django/conf/locale/<code>/formats.py)."""
