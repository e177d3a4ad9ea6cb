"""Settings for the test suite: the project's settings with a test-only secret and a fast password hasher.

DATABASE_URL still decides the database (PostgreSQL in CI, SQLite by default), so the suite runs on both.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")
# A developer's .env (which `make run` writes, with DEBUG=true) must not change what the tests see, here or in the
# commands and servers they start: set but empty, DOTENV_FILE means no file (subprocesses inherit it).
os.environ.setdefault("DOTENV_FILE", "")
# The tests' servers speak plain HTTP on 127.0.0.1 with DEBUG off, where production defaults would redirect to HTTPS
# and send cookies only over HTTPS; the servers the tests start in subprocesses inherit these too.
# tests/hotcross/test_deploy.py checks the production defaults themselves.
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")

from hotcross.settings import *  # noqa: F403
from tests.support.database import checkout_tag, test_database_name

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The test database's name says which checkout it belongs to (two suites at once on one DATABASE_URL never share
# one); pytest-xdist adds each worker's suffix (`_gw0`…). tests/support/database.py.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file beside the configured one, not memory: servers the tests start in other threads or processes must
    # see the same data, and each DATABASE_URL gets its own test file.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}-test-{checkout_tag()}"}  # noqa: F405
    # A fresh clone has no var/ until `make run`; the test file goes there all the same.
    os.makedirs(os.path.dirname(DATABASES["default"]["NAME"]) or ".", exist_ok=True)  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": test_database_name(DATABASES["default"]["NAME"])}  # noqa: F405

# Stripe is never reached from tests: a fake key of the shape dj-stripe accepts, and an API host on this machine
# that refuses connections. Tests that need the API start a local stub and point `stripe.api_base` at it
# (tests/support/stripe_stub.py).
STRIPE_LIVE_MODE = False
STRIPE_TEST_SECRET_KEY = "sk_test_hotcrossFakeKeyForTestsOnly0000"  # not a secret: no Stripe account has it
STRIPE_LIVE_SECRET_KEY = ""
STRIPE_API_HOST = "http://127.0.0.1:9"
# dj-stripe warns that STRIPE_API_HOST is set while DEBUG is off; here that is the point (and commands the tests run
# in a subprocess with these settings must not print the warning).
SILENCED_SYSTEM_CHECKS = [*SILENCED_SYSTEM_CHECKS, "djstripe.W002"]  # noqa: F405
