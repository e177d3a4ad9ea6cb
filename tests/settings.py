"""Settings for the test suite: the project's settings with a test-only secret and a fast password hasher.

DATABASE_URL still decides the database (PostgreSQL in CI, SQLite by default), so the suite runs on both.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")

from hotcross.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file beside the configured one, not memory: servers the tests start in other threads or processes must
    # see the same data, and each DATABASE_URL gets its own test file.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}-test"}  # noqa: F405
