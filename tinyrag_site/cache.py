"""Django's database cache with an atomic `incr()` and a cheap `add()`: the default shared
cache of TinyRAG.

Login throttles and rate limits count with `add()` + `incr()`. Redis does both atomically;
Django's DatabaseCache implements `incr()` as get-then-set, so two web workers counting at the
same moment both write the same number and one attempt goes uncounted (and `set()` also resets
the entry's expiry). Here the increment reads the row under a lock (`SELECT ... FOR UPDATE` on
PostgreSQL; SQLite transactions take the write lock when they begin, see settings) and writes
it back in the same transaction, keeping its expiry.

Django's `add()` also counts the whole table (`SELECT COUNT(*)`) on every call to decide on
culling: with a counter or two per request, that is a scan per request once the table is
large. Here `add()` is one INSERT (an expired entry of the key deleted first), and expired
entries are deleted in bulk now and then instead.

`count_up(entries)` is add-then-incr for several counters in one transaction: a search
counts the API rate and the search rate, and with add() and incr() that was four write
transactions per request, each one a turn of SQLite's single write lock (taken in turn with
every worker's history writes).
"""

from __future__ import annotations

import base64
import pickle
import random
from collections.abc import Sequence
from datetime import UTC, datetime

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import IntegrityError, connections, models, router, transaction
from django.utils.timezone import now

# Django culls a third of the entries once there are more than MAX_ENTRIES (300 by default):
# a stranger making 300 entries would evict everyone's throttle counters. Expired entries
# are culled first either way.
DEFAULT_MAX_ENTRIES = 1_000_000
PURGE_EVERY = 500  # add() calls, on average, between two deletions of all expired entries


class DatabaseCache(DjangoDatabaseCache):
    def __init__(self, table, params):
        options = dict(params.get("OPTIONS") or {})
        options.setdefault("MAX_ENTRIES", DEFAULT_MAX_ENTRIES)
        super().__init__(table, {**params, "OPTIONS": options})

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote_name = connection.ops.quote_name
        table, cache_key, expires = (
            quote_name(name) for name in (self._table, "cache_key", "expires")
        )
        expiry = datetime.max if timeout is None else datetime.fromtimestamp(timeout, tz=UTC)
        expiry = connection.ops.adapt_datetimefield_value(expiry.replace(microsecond=0))
        current = connection.ops.adapt_datetimefield_value(now().replace(microsecond=0))
        encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE {cache_key} = %s AND {expires} < %s", [key, current]
            )
            try:
                with transaction.atomic(using=db):
                    cursor.execute(
                        f"INSERT INTO {table} ({cache_key}, {quote_name('value')}, {expires}) "
                        "VALUES (%s, %s, %s)",
                        [key, encoded, expiry],
                    )
            except IntegrityError:  # the key is there and has not expired
                return False
            self._purge_now_and_then(cursor, connection, current)
        return True

    def count_up(self, entries: Sequence[tuple[str, int]], version=None) -> list[int]:
        """Add 1 to each (key, timeout) counter, made at 0 with that timeout when absent or
        expired, all in one transaction; the new values, in the order given. What add(key, 0,
        timeout) then incr(key) do for each, atomically, as incr() is (the row locked)."""
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote_name = connection.ops.quote_name
        table, cache_key, value, expires = (
            quote_name(name) for name in (self._table, "cache_key", "value", "expires")
        )
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        current = connection.ops.adapt_datetimefield_value(now().replace(microsecond=0))
        zero = base64.b64encode(pickle.dumps(0, self.pickle_protocol)).decode("latin1")
        keys = [self.make_and_validate_key(key, version=version) for key, _ in entries]
        counts: dict[str, int] = {}
        result = [0] * len(entries)
        with transaction.atomic(using=db), connection.cursor() as cursor:
            # in key order: two transactions locking the same rows lock them in the same order
            for n in sorted(range(len(entries)), key=keys.__getitem__):
                key = keys[n]
                if key not in counts:
                    expiry = datetime.fromtimestamp(
                        self.get_backend_timeout(entries[n][1]), tz=UTC
                    ).replace(microsecond=0)
                    # made at 0, or back to 0 with a new expiry where it has expired
                    cursor.execute(
                        f"INSERT INTO {table} ({cache_key}, {value}, {expires}) "
                        f"VALUES (%s, %s, %s) ON CONFLICT ({cache_key}) DO UPDATE SET "
                        f"{value} = EXCLUDED.{value}, {expires} = EXCLUDED.{expires} "
                        f"WHERE {table}.{expires} < %s",
                        [key, zero, connection.ops.adapt_datetimefield_value(expiry), current],
                    )
                    cursor.execute(
                        f"SELECT {value} FROM {table} WHERE {cache_key} = %s{lock}", [key]
                    )
                    raw = connection.ops.process_clob(cursor.fetchone()[0])
                    counts[key] = pickle.loads(base64.b64decode(raw.encode()))
                counts[key] += 1  # a key given twice is counted twice
                result[n] = counts[key]
            for key, number in counts.items():
                encoded = base64.b64encode(pickle.dumps(number, self.pickle_protocol))
                cursor.execute(
                    f"UPDATE {table} SET {value} = %s WHERE {cache_key} = %s",
                    [encoded.decode("latin1"), key],
                )
            self._purge_now_and_then(cursor, connection, current)
        return result

    def _purge_now_and_then(self, cursor, connection, current) -> None:
        """Now and then (1 call in PURGE_EVERY), every expired entry goes."""
        if random.random() < 1 / PURGE_EVERY:  # noqa: S311 -- a sampling rate, not a secret
            quote_name = connection.ops.quote_name
            table, expires = quote_name(self._table), quote_name("expires")
            cursor.execute(f"DELETE FROM {table} WHERE {expires} < %s", [current])

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
