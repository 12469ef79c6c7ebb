"""Test settings: the real settings module, read with a test environment.

Only environment defaults are set here; everything else is tinyrag_site.settings itself.
"""

import os
import tempfile

# A developer's .env never changes the suite (tinyrag_site/settings.py reads it otherwise).
os.environ.setdefault("TINYRAG_ENV_FILE", "")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-any-deployment-0123456789")
os.environ.setdefault("TINYRAG_HTTPS", "0")
os.environ.setdefault("TINYRAG_STATIC_MANIFEST", "0")  # no collectstatic before tests
os.environ.setdefault("TINYRAG_LOG_FORMAT", "plain")
os.environ.setdefault("STATIC_ROOT", tempfile.mkdtemp(prefix="tinyrag-tests-static-"))
os.environ.setdefault("TINYRAG_DATA_DIR", tempfile.mkdtemp(prefix="tinyrag-tests-data-"))
os.environ.setdefault("TINYRAG_INDEX_DIR", tempfile.mkdtemp(prefix="tinyrag-tests-index-"))
# The fixtures' datasets lie in pytest's tmp_path, under the temporary directory.
os.environ.setdefault("TINYRAG_DATASET_ROOTS", tempfile.gettempdir())

from tinyrag_site.settings import *  # noqa: E402, F403
