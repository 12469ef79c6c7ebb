"""Django's database cache with an atomic `incr()`: the default shared cache of TinyRAG.

Login throttles and rate limits count with `add()` + `incr()`. Redis does both atomically;
Django's DatabaseCache implements `incr()` as get-then-set, so two web workers counting at the
same moment both write the same number and one attempt goes uncounted (and `set()` also resets
the entry's expiry). Here the increment reads the row under a lock (`SELECT ... FOR UPDATE` on
PostgreSQL; SQLite transactions take the write lock when they begin, see settings) and writes
it back in the same transaction, keeping its expiry.
"""

from __future__ import annotations

import base64
import pickle
from datetime import datetime

from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, models, router, transaction
from django.utils.timezone import now

# Django culls a third of the entries once there are more than MAX_ENTRIES (300 by default):
# a stranger making 300 entries would evict everyone's throttle counters. Expired entries
# are culled first either way.
DEFAULT_MAX_ENTRIES = 1_000_000


class DatabaseCache(DjangoDatabaseCache):
    def __init__(self, table, params):
        options = dict(params.get("OPTIONS") or {})
        options.setdefault("MAX_ENTRIES", DEFAULT_MAX_ENTRIES)
        super().__init__(table, {**params, "OPTIONS": options})

    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote_name = connection.ops.quote_name
        table, cache_key = quote_name(self._table), quote_name("cache_key")
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote_name('value')}, {quote_name('expires')} FROM {table} "
                f"WHERE {cache_key} = %s{lock}",
                [key],
            )
            row = cursor.fetchone()
            if row is None or self._expires(row[1], connection) < now():
                raise ValueError(f"Key '{key}' not found")
            value = pickle.loads(base64.b64decode(connection.ops.process_clob(row[0]).encode()))
            value += delta
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(
                f"UPDATE {table} SET {quote_name('value')} = %s WHERE {cache_key} = %s",
                [encoded, key],
            )
        return value

    @staticmethod
    def _expires(raw, connection) -> datetime:
        """The expiry column as an aware datetime, converted as Django's get_many() does."""
        expression = models.Expression(output_field=models.DateTimeField())
        for converter in connection.ops.get_db_converters(
            expression
        ) + expression.get_db_converters(connection):
            raw = converter(raw, expression, connection)
        return raw
