"""What the product's pages (pages.py) and API (api.py, api_errors.py, parsers.py) share."""

PK_MAX = 2**63 - 1  # a 64-bit primary key column: a larger id is "not found", not a DB error
