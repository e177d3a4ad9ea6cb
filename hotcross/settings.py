"""Settings for the Hotcross back office, read from the environment (and `.env` when present).

See `.env.example` and the configuration table of docs/operations.md for every variable. A missing or unusable value
raises `ImproperlyConfigured` with one line saying what to set; `manage.py` and `hotcross.asgi` print that line, not a
traceback.
"""

import datetime
import os
import warnings
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from hotcross import local_env
from infra import proxy
from infra.log_filters import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ, with a value that cannot be read as its type raising ImproperlyConfigured that names the
    variable (never its value, which may be a secret) instead of a ValueError deep in the settings."""

    _TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
    _FALSE = frozenset({"false", "0", "no", "off", "n", "f", ""})

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False):
        if cast is bool and var in self.ENVIRON:
            text = str(self.ENVIRON[var]).strip().lower()
            if text not in self._TRUE | self._FALSE:
                raise ImproperlyConfigured(f"{var} must be true or false.")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(cast, "a valid value")
            raise ImproperlyConfigured(f"{var} must be {kind}.") from None

    def db_url(self, var: str = environ.Env.DEFAULT_DATABASE_ENV, default: Any = environ.Env.NOTSET, engine=None):
        given = self.ENVIRON.get(var)
        scheme, found, _rest = (given or "").partition("://")
        if given is not None and (not found or scheme not in self.DB_SCHEMES):
            # Without a known scheme (`127.0.0.1:5432/x`) django-environ cannot tell which database it is.
            raise ImproperlyConfigured(
                f"{var} must start with the database's scheme: postgres://user@host:port/name or "
                "sqlite:////absolute/path.sqlite3."
            )
        try:
            with warnings.catch_warnings():  # its "Engine not recognized" warning prints the URL, password included
                warnings.simplefilter("ignore", UserWarning)
                return super().db_url(var, default=default, engine=engine)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{var} is not a usable database URL: {exc}.") from None


env = _Env()
# `.env` at the top of the repository (`make run` writes one for development: hotcross.local_env), or the file named
# by DOTENV_FILE (set but empty: no file, as in the test suite). Variables already in the environment win over it.
DOTENV_FILE = os.environ.get("DOTENV_FILE", str(BASE_DIR / ".env"))
if DOTENV_FILE:
    if Path(DOTENV_FILE).is_file():
        environ.Env.read_env(DOTENV_FILE)
    elif "DOTENV_FILE" in os.environ:
        raise ImproperlyConfigured(f"DOTENV_FILE names {DOTENV_FILE}, which is not a file. Fix or unset DOTENV_FILE.")


DEBUG = env.bool("DEBUG", default=False)

# A development key is only acceptable while DEBUG is on; production must bring its own.
_DEV_SECRET_KEY = "django-insecure-hotcross-development-only"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set. Set SECRET_KEY in the environment or in {DOTENV_FILE or '.env'} "
            "(`make run` writes a development .env), or DEBUG=true for development."
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "hotcross.apps.HotcrossAdminConfig",  # django.contrib.admin with the back office's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djstripe",  # our receivers run on its webhook_post_process signal, whatever this order
    "accounts",
    "mcp_bridge",
    "api",  # /api/v1/: key check and usage reports for servers that run elsewhere
    "axes",  # admin login throttling (see "Admin login throttling" below)
    "oauth2_provider",  # OAuth 2.1 authorization server for MCP clients (see "OAuth for MCP clients" below)
    "oauth",
    "portal",  # customers' own pages: /signup/, /org/, /invitations/<token>/ (issue 30)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hotcross.middleware.RejectNulMiddleware",  # a NUL in a parameter: 400 before any view or session query
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into the lockout page
    # Last, so its process_exception sees a view's error first: a database that did not answer is a 503.
    "hotcross.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "hotcross.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "hotcross.asgi.application"
WSGI_APPLICATION = None

# Database: an embedded SQLite file by default, PostgreSQL (psycopg 3 with Django's connection pool) in production.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'hotcross.sqlite3'}")}
# PostgreSQL: how soon a database that stops answering is noticed (infra.pg), so requests fail in seconds (HTTP 503,
# MCP -32002) instead of hanging. Seconds a new connection may take; seconds a query outside a transaction may wait
# for its answer in the servers (uvicorn, `mcp_server`; 0 = unbounded; migrations and other commands are not bounded);
# seconds a request may wait for a pooled connection.
DATABASE_CONNECT_TIMEOUT = env.float("DATABASE_CONNECT_TIMEOUT", default=3.0)
DATABASE_QUERY_TIMEOUT = env.float("DATABASE_QUERY_TIMEOUT", default=5.0)
DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", default=5.0)
# Usage events a stopping MCP server could not write (database unreachable) are kept in this JSON-lines file and
# written at the next start or by `manage.py usage_spool load` (accounts.services.usage_spool).
HOTCROSS_USAGE_SPOOL = env.path("HOTCROSS_USAGE_SPOOL", default=BASE_DIR / "var" / "usage-spool.jsonl")
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.postgresql":
    from infra import pg

    _db["OPTIONS"] = pg.connection_options(
        _db.get("OPTIONS"),
        connect_timeout=DATABASE_CONNECT_TIMEOUT,
        pool_min_size=env.int("DATABASE_POOL_MIN_SIZE", default=1),
        pool_max_size=env.int("DATABASE_POOL_MAX_SIZE", default=20),
        pool_timeout=DATABASE_POOL_TIMEOUT,
        # A connection the pool could not make is not tried again for minutes with a growing backoff: the next
        # request that needs one starts afresh, so a database that is back is used within seconds (infra.pg).
        reconnect_timeout=DATABASE_POOL_TIMEOUT,
        # Behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode before 1.21): false.
        prepared_statements=env.bool("DATABASE_PREPARED_STATEMENTS", default=True),
    )
    _db["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not hold them as well
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (webhooks, usage events) would otherwise fail with "database is locked".
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"].update({"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Dates as 2026-12-06 and times as 2026-12-06 21:31 (UTC) everywhere (hotcross/formats/en/formats.py).
FORMAT_MODULE_PATH = ["hotcross.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# uvicorn does not serve static files; outside DEBUG put a web server or CDN in front of STATIC_ROOT.
SERVE_STATIC = env.bool("SERVE_STATIC", default=DEBUG)

LOGIN_URL = "admin:login"

# --- HTTPS and proxies ----------------------------------------------------------------------------------------------
# On by default whenever DEBUG is off, so a production configuration passes `manage.py check --deploy` clean; each one
# can be turned off (or HSTS shortened) from the environment. /healthz is never redirected: load balancers probe it
# over plain HTTP. /mcp is served beside Django (hotcross.asgi), so the redirect never applies to it.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Behind a reverse proxy (a load balancer that ends TLS): BEHIND_PROXY names it, by its addresses (IPs or networks,
# comma-separated). X-Forwarded-For and X-Forwarded-Proto are then trusted from those addresses only (uvicorn's own
# default, 127.0.0.1, is replaced: infra.proxy), so the client's address for every limit (login throttling, OAuth
# registrations) is the one the proxy appended, and X-Forwarded-Proto says whether the request was HTTPS. false or
# empty: no proxy, the connection's address counts and forwarded headers are ignored.
PROXY_ADDRESSES = proxy.proxy_addresses(env.str("BEHIND_PROXY", default=""))
BEHIND_PROXY = bool(PROXY_ADDRESSES)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Admin login throttling (django-axes) -------------------------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is refused (HTTP 429, the
# page templates/lockout.html) for AXES_COOLOFF_MINUTES, even with the right password; a successful login resets
# the count. Staff unlock early in the admin (Axes → Access attempts: delete the row) or with
# `manage.py axes_reset_username USERNAME` / `axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "lockout.html"
AXES_CLIENT_IP_CALLABLE = "infra.proxy.client_ip"
AXES_VERBOSE = False  # no start-up banner in every command; failures and lockouts are still logged (WARNING)

# --- Hotcross domain settings -------------------------------------------------------------------------------------
# Where this site is reached from outside: the one source for every absolute URL the project prints or registers
# (seed_demo's demo lines, the landing page's MCP URL, `stripe_webhook_endpoint` without --url). `make run` passes
# what it serves (http://HOST:PORT) and writes it into the .env it creates.
HOTCROSS_PUBLIC_URL = env.str("HOTCROSS_PUBLIC_URL", default=local_env.DEFAULT_PUBLIC_URL).rstrip("/")
if not HOTCROSS_PUBLIC_URL.startswith(("http://", "https://")) or "/" in HOTCROSS_PUBLIC_URL.split("://", 1)[1]:
    raise ImproperlyConfigured(
        "HOTCROSS_PUBLIC_URL must be the site's address, like https://backoffice.example.com (no path)."
    )
# Subscription statuses whose keys work. active and trialing always; add past_due for a grace period.
HOTCROSS_ALLOWED_STATUSES = env.list("HOTCROSS_ALLOWED_STATUSES", default=["active", "trialing"])
# How long a key check may be served from this process's memory. Capped at one second so that revocations,
# deactivations, status and seat changes take effect everywhere within a second; 0 turns the cache off.
HOTCROSS_KEY_CACHE_SECONDS = env.float("HOTCROSS_KEY_CACHE_SECONDS", default=1.0)
# The credential backends `accounts.credentials.authenticate` asks, in order (like AUTHENTICATION_BACKENDS): the first
# that recognizes a credential checks it. API keys (hc_live_…, mp_live_…) first; the OAuth access-token backend takes
# whatever is left, so it comes last. Listed here, not imported by `accounts`, so `accounts` never imports `oauth`.
HOTCROSS_CREDENTIAL_BACKENDS = [
    "accounts.authentication.KeyBackend",
    "oauth.authentication.TokenBackend",
]
# MCP bridge (mcp_bridge): Python modules whose `TOOLS` the MCP server offers besides the built-in `whoami` and
# `usage`, comma-separated (e.g. "billing_tools.mcp,reports.mcp_tools").
HOTCROSS_MCP_TOOLS = env.list("HOTCROSS_MCP_TOOLS", default=[])
# Threads per pool for the MCP bridge's database work: one pool for sync tools, one for key checks and usage events.
# Each thread gives its connection back after every unit of work, so the bridge holds at most 2 × this many
# connections: keep that below DATABASE_POOL_MAX_SIZE (`manage.py check --deploy` warns otherwise).
HOTCROSS_MCP_DB_THREADS = env.int("HOTCROSS_MCP_DB_THREADS", default=8)
# Usage events of answered MCP calls are buffered and written in one INSERT this often (capped at 5 s). A graceful stop
# writes what is buffered; only a hard kill loses the last interval (mcp_bridge.metering).
HOTCROSS_MCP_METERING_FLUSH_SECONDS = env.float("HOTCROSS_MCP_METERING_FLUSH_SECONDS", default=0.05)
# Raw usage events are kept this many days (whole months are dropped once older: `manage.py usage prune`); the usage
# rollups, which every figure is read from, are kept.
HOTCROSS_USAGE_RAW_RETENTION_DAYS = env.int("HOTCROSS_USAGE_RAW_RETENTION_DAYS", default=400)
if HOTCROSS_USAGE_RAW_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("HOTCROSS_USAGE_RAW_RETENTION_DAYS must be 1 or more (days of raw usage events kept).")
# MCP gateway (mcp_bridge.gateway): an upstream MCP server whose tools, prompts and resources the bridge serves behind
# its keys, seats and metering. A command spoken to over stdio ("uvx hotcross") or a streamable-HTTP URL; empty: none.
HOTCROSS_MCP_UPSTREAM = env.str("HOTCROSS_MCP_UPSTREAM", default="")
# The stdio upstream's environment (a JSON object; the bridge's own environment is not passed on, only PATH/HOME and
# the like) and the HTTP upstream's extra headers (a JSON object, e.g. a service credential).
HOTCROSS_MCP_UPSTREAM_ENV = env.str("HOTCROSS_MCP_UPSTREAM_ENV", default="")
HOTCROSS_MCP_UPSTREAM_HEADERS = env.str("HOTCROSS_MCP_UPSTREAM_HEADERS", default="")
# shared: one upstream for everyone; organization: one stdio process per organization (own data folder).
HOTCROSS_MCP_UPSTREAM_SCOPE = env.str("HOTCROSS_MCP_UPSTREAM_SCOPE", default="shared")
# Seconds a forwarded call may take (then upstream_timeout), and an upstream may take to start and answer initialize.
HOTCROSS_MCP_UPSTREAM_TIMEOUT = env.float("HOTCROSS_MCP_UPSTREAM_TIMEOUT", default=30.0)
HOTCROSS_MCP_UPSTREAM_START_TIMEOUT = env.float("HOTCROSS_MCP_UPSTREAM_START_TIMEOUT", default=60.0)
# The cached tool/prompt/resource lists are read again this often (and at once on notifications/*/list_changed).
HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS = env.float("HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS", default=300.0)
# Organization scope: a process idle this long is stopped; at most this many run (least recently used stopped first);
# each organization's process gets <data dir>/<organization id> as HOTCROSS_DATA_DIR and working directory.
HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS = env.float("HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS", default=600.0)
HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES = env.int("HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES", default=20)
HOTCROSS_MCP_UPSTREAM_DATA_DIR = env.str("HOTCROSS_MCP_UPSTREAM_DATA_DIR", default=str(BASE_DIR / "var" / "upstream"))
# A command (stdio) upstream runs under the host's supervisor (upstream.supervisor): one process per scope whatever
# the number of workers; false: each worker runs its own.
HOTCROSS_MCP_UPSTREAM_SUPERVISOR = env.str("HOTCROSS_MCP_UPSTREAM_SUPERVISOR", default="true")
# What clients are told the upstream is called in its errors ("the tool server is not working ...").
HOTCROSS_MCP_UPSTREAM_NAME = env.str("HOTCROSS_MCP_UPSTREAM_NAME", default="the tool server")
# Organization scope: each process in a bubblewrap sandbox (upstream.sandbox; "off" runs them unsandboxed), with a
# network (none, loopback, full), read-only paths besides the system's (where the tool server is installed: a JSON
# list or paths split by ":"), the uid it runs as, and its limits: CPU seconds, data memory (MB), open files.
HOTCROSS_MCP_UPSTREAM_SANDBOX = env.str("HOTCROSS_MCP_UPSTREAM_SANDBOX", default="bubblewrap")
HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK = env.str("HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK", default="none")
HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS = env.str("HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS", default="")
HOTCROSS_MCP_UPSTREAM_SANDBOX_UID = env.str("HOTCROSS_MCP_UPSTREAM_SANDBOX_UID", default="65534")
HOTCROSS_MCP_UPSTREAM_CPU_SECONDS = env.str("HOTCROSS_MCP_UPSTREAM_CPU_SECONDS", default="3600")
HOTCROSS_MCP_UPSTREAM_MEMORY_MB = env.str("HOTCROSS_MCP_UPSTREAM_MEMORY_MB", default="2048")
HOTCROSS_MCP_UPSTREAM_OPEN_FILES = env.str("HOTCROSS_MCP_UPSTREAM_OPEN_FILES", default="1024")
# HTTP upstream: the Ed25519 private key (PEM file, made on first use) that signs the caller's assertion on every
# forwarded request (X-Hotcross-Caller); its public half is /.well-known/jwks.json. The same file on every host.
HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY = env.str(
    "HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY", default=str(BASE_DIR / "var" / "upstream-assertion-key.pem")
)
# A tools/call of an HTTP upstream's tool is answered by the bridge's direct forwarding, without the mcp SDK's server
# (mcp_bridge.gateway.direct: same rules, a fraction of the CPU); false: every request goes through the SDK.
HOTCROSS_MCP_DIRECT_FORWARD = env.bool("HOTCROSS_MCP_DIRECT_FORWARD", default=True)
# Plans (accounts.plans): the code of the plan of organizations that have none of their own; empty: no plan (every
# tool, no limits, no usage billing).
HOTCROSS_DEFAULT_PLAN = env.str("HOTCROSS_DEFAULT_PLAN", default="")
# Plans' rate limits (accounts.rate_buckets) when Redis cannot be reached: true lets calls through, false refuses them.
HOTCROSS_RATE_LIMIT_FAIL_OPEN = env.bool("HOTCROSS_RATE_LIMIT_FAIL_OPEN", default=True)
# How long a process may spend rate-limit tokens it took ahead in one Redis round trip (a lease) before the unused ones
# go back; 0: no leases, every call asks Redis. Longer saves round trips and lets a limit be passed by up to `rate × L`
# calls (accounts.rate_bucket_scripts).
HOTCROSS_RATE_LIMIT_LEASE_SECONDS = env.float("HOTCROSS_RATE_LIMIT_LEASE_SECONDS", default=0.25)
if not 0 <= HOTCROSS_RATE_LIMIT_LEASE_SECONDS <= 5:
    raise ImproperlyConfigured("HOTCROSS_RATE_LIMIT_LEASE_SECONDS must be between 0 (no leases) and 5 seconds.")
# Key-check API (api/): how long a client may remember a /api/v1/keys/verify answer (Cache-Control max-age, capped at
# 60 s: a revocation reaches such a client within that time), and how old a reported usage event may be.
HOTCROSS_API_VERIFY_MAX_AGE = env.int("HOTCROSS_API_VERIFY_MAX_AGE", default=60)
HOTCROSS_API_USAGE_WINDOW_HOURS = env.float("HOTCROSS_API_USAGE_WINDOW_HOURS", default=24.0)

# Usage billing (accounts/billing/usage.py, `manage.py billing report-usage`): calls are reported to Stripe
# per organization per interval (minutes: a multiple of 60 that divides a day), once the interval is over and
# HOTCROSS_METER_SETTLE_SECONDS more have passed; calls arriving later (the API's window, the spool) are reported as
# corrections while their interval is within HOTCROSS_METER_LATE_HOURS (default: the API's window + 1 h). Stripe
# errors (5xx, network, 429) are retried HOTCROSS_METER_TRIES times per run, waiting HOTCROSS_METER_BACKOFF_SECONDS,
# doubled each time.
HOTCROSS_METER_INTERVAL_MINUTES = env.int("HOTCROSS_METER_INTERVAL_MINUTES", default=60)
if (
    HOTCROSS_METER_INTERVAL_MINUTES < 60
    or HOTCROSS_METER_INTERVAL_MINUTES % 60
    or 1440 % HOTCROSS_METER_INTERVAL_MINUTES
):
    raise ImproperlyConfigured(
        "HOTCROSS_METER_INTERVAL_MINUTES must be a multiple of 60 that divides a day (60, 120, 180, 240, 360, 480, 720 "
        "or 1440)."
    )
HOTCROSS_METER_SETTLE_SECONDS = env.int("HOTCROSS_METER_SETTLE_SECONDS", default=300)
HOTCROSS_METER_LATE_HOURS = env.float("HOTCROSS_METER_LATE_HOURS", default=HOTCROSS_API_USAGE_WINDOW_HOURS + 1)
if not 0 <= HOTCROSS_METER_LATE_HOURS <= 30 * 24:
    raise ImproperlyConfigured("HOTCROSS_METER_LATE_HOURS must be between 0 and 720 (Stripe takes 35 days back).")
HOTCROSS_METER_TRIES = env.int("HOTCROSS_METER_TRIES", default=4)
HOTCROSS_METER_BACKOFF_SECONDS = env.float("HOTCROSS_METER_BACKOFF_SECONDS", default=1.0)

# --- Stripe (dj-stripe) -------------------------------------------------------------------------------------------
# Stripe is the source of truth for subscription status and seats (accounts/billing/). With no key set the app
# still starts (a development default): webhooks are then answered 503 (Stripe retries) until a key is configured.
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_TEST_SECRET_KEY = env.str("STRIPE_TEST_SECRET_KEY", default="")
STRIPE_LIVE_SECRET_KEY = env.str("STRIPE_LIVE_SECRET_KEY", default="")
# How long one call to the Stripe API may take, and how often a failed call is tried again (accounts.billing.config):
# a webhook waits for these calls, and so does the next delivery for the same customer.
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=1)
# Only for a local fake of the Stripe API; dj-stripe treats the mere presence of the setting as "use this host".
if env.str("STRIPE_API_HOST", default=""):
    STRIPE_API_HOST = env.str("STRIPE_API_HOST")
DJSTRIPE_SUBSCRIBER_MODEL = "accounts.Organization"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
# Webhooks are checked against the secret stored on their WebhookEndpoint row (`manage.py stripe_webhook_endpoint`).
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# Organizations are found by Stripe customer id, never by a customer's metadata: dj-stripe would look
# metadata["djstripe_subscriber"] up as an Organization pk and fail (HTTP 500) on another app's non-uuid value.
DJSTRIPE_SUBSCRIBER_CUSTOMER_KEY = ""

# --- Several workers, metrics, logs (docs/operations.md "Several workers") ---------------------------------------
# Shared state of the processes (workers, machines) goes through Django's cache: Redis when REDIS_URL is set
# (redis://host:6379/0), else each process's own memory (enough for one process; `make run` needs no Redis).
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hotcross",
            "TIMEOUT": 300,
            # A Redis that stops answering costs a call at most this long (the rate limits are on every call; a busy
            # event loop counts too, so not much less).
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# /metrics (infra.metrics): a Prometheus scraper sends `Authorization: Bearer <this>`; staff can read it signed in.
# Empty: staff only. With several workers also set PROMETHEUS_MULTIPROC_DIR (docs/operations.md).
HOTCROSS_METRICS_TOKEN = env.str("HOTCROSS_METRICS_TOKEN", default="")
# plain (default) or json: one JSON object per log line, and one line per HTTP request with its request id
# (infra.request_log).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
# --- OAuth for MCP clients (issue 13: oauth/, django-oauth-toolkit) -------------------------------------------------
# MCP clients sign developers in with OAuth 2.1 (authorization code + PKCE S256, public clients); every grant is a
# developer's, on the developer's seat. Tokens are stored as SHA-256 checksums only. Lifetimes in seconds.
HOTCROSS_OAUTH_ACCESS_TOKEN_SECONDS = env.int("HOTCROSS_OAUTH_ACCESS_TOKEN_SECONDS", default=3600)
HOTCROSS_OAUTH_REFRESH_TOKEN_SECONDS = env.int("HOTCROSS_OAUTH_REFRESH_TOKEN_SECONDS", default=30 * 24 * 3600)
# Dynamic client registrations one address may make per hour (0 turns registration off).
HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR = env.int("HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR", default=20)
# Client ID Metadata Documents at http://127.0.0.1 (a test's or a developer's own machine): only with DEBUG unless set.
HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK = env.bool("HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK", default=DEBUG)
# One deadline for a whole metadata document fetch (name resolution, connect, TLS, headers and body), in seconds
# (oauth.fetching); the document is refused when it has not all arrived by then.
HOTCROSS_OAUTH_CIMD_FETCH_SECONDS = env.float("HOTCROSS_OAUTH_CIMD_FETCH_SECONDS", default=5.0)
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth.Client"
# django-oauth-toolkit warns that http redirect URIs are allowed: they are, but only to loopback addresses (native
# clients' listeners, RFC 8252), which oauth.models.Client.clean enforces for every registration.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
OAUTH2_PROVIDER = {
    "SCOPES": {"mcp": "Use the Hotcross MCP tools as you, on your seat"},
    "DEFAULT_SCOPES": ["mcp"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": HOTCROSS_OAUTH_ACCESS_TOKEN_SECONDS,
    "REFRESH_TOKEN_EXPIRE_SECONDS": HOTCROSS_OAUTH_REFRESH_TOKEN_SECONDS,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "PKCE_REQUIRED": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],  # http only for loopback: oauth.models.Client.clean
    "ALLOW_LOCALHOST_LOOPBACK": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "OIDC_ISS_ENDPOINT": HOTCROSS_PUBLIC_URL,
    "OAUTH2_VALIDATOR_CLASS": "oauth.validators.HotcrossValidator",
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none"],
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),  # + oauth.registration
    "CIMD_ENABLED": True,
    # Staff see clients (block) and grants (revoke) in oauth.admin; tokens and codes never.
    "APPLICATION_ADMIN_CLASS": "oauth.admin.ClientAdmin",
    "ACCESS_TOKEN_ADMIN_CLASS": "oauth.admin.HiddenAdmin",
    "REFRESH_TOKEN_ADMIN_CLASS": "oauth.admin.HiddenAdmin",
    "GRANT_ADMIN_CLASS": "oauth.admin.HiddenAdmin",
    "ID_TOKEN_ADMIN_CLASS": "oauth.admin.HiddenAdmin",
    "CIMD_METADATA_FETCHER": "oauth.fetching.HotcrossMetadataFetcher",
    "CIMD_FETCH_TIMEOUT_SECONDS": HOTCROSS_OAUTH_CIMD_FETCH_SECONDS,  # oauth.fetching uses its own deadline
    "CIMD_MAX_DOCUMENT_SIZE": 16 * 1024,
}
# Developers' sign-in codes are mailed through Django's email framework: smtp://user:password@host:587 (with
# ?tls=True), consolemail:// (printed; `make run`), filemail:////abs/path (one file per mail), dummymail://.
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Hotcross <no-reply@localhost>")
# The email sign-in's limits (oauth/signin.py), counted in the database so they hold across workers, the same for an
# address that is no developer's: codes made (starts and resends, each a mail for a developer's address) per address
# and per client address per hour; codes tried per address and per client address per hour; after this many wrong
# codes for an address (in a day, since its last right one) each further try waits FAILURE_WAIT seconds, doubled
# with every wrong one, up to MAX_WAIT.
HOTCROSS_SIGN_IN_MAILS_PER_ADDRESS_PER_HOUR = env.int("HOTCROSS_SIGN_IN_MAILS_PER_ADDRESS_PER_HOUR", default=3)
HOTCROSS_SIGN_IN_STARTS_PER_CLIENT_PER_HOUR = env.int("HOTCROSS_SIGN_IN_STARTS_PER_CLIENT_PER_HOUR", default=20)
HOTCROSS_SIGN_IN_GUESSES_PER_ADDRESS_PER_HOUR = env.int("HOTCROSS_SIGN_IN_GUESSES_PER_ADDRESS_PER_HOUR", default=10)
HOTCROSS_SIGN_IN_GUESSES_PER_CLIENT_PER_HOUR = env.int("HOTCROSS_SIGN_IN_GUESSES_PER_CLIENT_PER_HOUR", default=30)
HOTCROSS_SIGN_IN_FREE_FAILURES = env.int("HOTCROSS_SIGN_IN_FREE_FAILURES", default=3)
HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS = env.float("HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS", default=2.0)
HOTCROSS_SIGN_IN_MAX_WAIT_SECONDS = env.int("HOTCROSS_SIGN_IN_MAX_WAIT_SECONDS", default=3600)
# Customers' self-service (portal/, accounts.services.members): an invitation link works once, this many hours;
# invitations (and their resends) per invited address and per client address per hour; sign-up starts per address and
# per client address per hour (each also counts as a sign-in code: the limits above hold too).
HOTCROSS_INVITATION_HOURS = env.int("HOTCROSS_INVITATION_HOURS", default=168)
HOTCROSS_INVITATIONS_PER_ADDRESS_PER_HOUR = env.int("HOTCROSS_INVITATIONS_PER_ADDRESS_PER_HOUR", default=5)
HOTCROSS_INVITATIONS_PER_CLIENT_PER_HOUR = env.int("HOTCROSS_INVITATIONS_PER_CLIENT_PER_HOUR", default=50)
HOTCROSS_SIGNUPS_PER_ADDRESS_PER_HOUR = env.int("HOTCROSS_SIGNUPS_PER_ADDRESS_PER_HOUR", default=5)
HOTCROSS_SIGNUPS_PER_CLIENT_PER_HOUR = env.int("HOTCROSS_SIGNUPS_PER_CLIENT_PER_HOUR", default=10)
# Owners' alerts (accounts.alerts): after usage is written, each process checks an organization's monthly cap (80 % and
# 100 % mails) at most once per this many seconds, and not at all once this month's 100 % mail is known sent.
HOTCROSS_ALERT_CHECK_SECONDS = env.float("HOTCROSS_ALERT_CHECK_SECONDS", default=30.0)

LOGGING = logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="WARNING"))  # infra.log_filters
