"""Settings for Retail Pulse. Everything that differs between machines comes from the environment;
docs/configuration.md lists every variable read here."""

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from retailpulse.env import env_bool, env_choice, env_float, env_int, env_names, env_range, env_rate, env_str

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for local work).")
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "django_q",
    "stores",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Admin logins: after AXES_FAILURE_LIMIT failed attempts for one user name from one address, that
# pair is locked out for the cool-off (429, with a message); another operator unlocks it in the
# admin (Axes: access attempts) or with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("RETAILPULSE_LOGIN_ATTEMPTS", 5, minimum=1)
AXES_COOLOFF_TIME = env_float("RETAILPULSE_LOGIN_LOCKOUT_HOURS", 1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner in every process's log
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"

ROOT_URLCONF = "retailpulse.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

WSGI_APPLICATION = "retailpulse.wsgi.application"

# --- Database -------------------------------------------------------------------------------------
# RETAILPULSE["LEASE_SECONDS"] (below), read here for PostgreSQL's options too.
_lease_seconds = env_float("RETAILPULSE_LEASE_SECONDS", 6.0)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if env_bool("DATABASE_PGBOUNCER", False):
    # PgBouncer in transaction mode cannot keep a server-side cursor across transactions.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A process frozen inside a transaction (a hung VM, a long GC pause) would hold its row locks, and
    # with them every worker writing to the same job, until it woke. The server ends that transaction
    # after a lease's length, when the frozen worker's chunks fall free as well.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={round(_lease_seconds * 1000)}"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and every worker process write to one file. WAL lets readers run beside the
    # writer; IMMEDIATE takes the write lock at BEGIN, so a transaction waits (up to the busy
    # timeout) instead of failing with "database is locked" when it upgrades from read to write.
    # Connections are kept (CONN_MAX_AGE above): opening one costs CPU (Django registers its SQL
    # functions on each), paid by every status poll and queue poll otherwise.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests start real worker processes, which cannot see an in-memory database: the test database
    # is a file named after the main one (db.sqlite3 -> test_db.sqlite3, next to it), so test runs
    # on different databases do not share one.
    _main_db = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_main_db.with_name(f"test_{_main_db.name}"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Production hardening (active when DJANGO_DEBUG is off) ---------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Probes and scrapers (load balancer, Kubernetes, Prometheus) often speak plain HTTP inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- API ------------------------------------------------------------------------------------------
# A 100,000-image job is about 6 MB of JSON; larger bodies get a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("RETAILPULSE_MAX_BODY_BYTES", 32 * 1024 * 1024)
REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.AnyContentTypeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "jobs.api.errors.error_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": ["jobs.api.access.ClientKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["jobs.api.access.TokenRequiredIfEnabled"],
    "DEFAULT_THROTTLE_CLASSES": ["jobs.api.access.ScopedThrottle"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Retail Pulse API",
    "DESCRIPTION": "Submit store visits, follow their jobs, read the measured images.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.openapi.contract_paths",
        "jobs.api.openapi.submit_limits",
        "jobs.api.openapi.empty_query_values",
        "jobs.api.openapi.token_security_as_configured",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStatus": "jobs.models.Job.Status",
        "ImageStatus": "jobs.models.ImageResult.Status",
        "CallbackStatus": "jobs.models.CallbackStatus",
    },
}

# --- Image processing -----------------------------------------------------------------------------
# A century: a longer retention would reach before year 1, which datetime cannot hold.
RETENTION_MAX_DAYS = 36_500
# Worker processes: one per core. Each keeps as many downloads in flight on an event loop as keep its
# core busy (jobs.worker.concurrency); more processes only add memory and CPU per image
# (docs/performance.md).
WORKERS = env_int("RETAILPULSE_WORKERS", os.cpu_count() or 1, minimum=1)
RETAILPULSE: dict[str, Any] = {
    # Simulated GPU time per image, uniform in [low, high] seconds.
    "GPU_DELAY": env_range("RETAILPULSE_GPU_DELAY", "0.1-0.4"),
    # Let jobs fetch from loopback/private/reserved addresses (tests, on-premise image stores).
    "FETCH_ALLOW_PRIVATE": env_bool("RETAILPULSE_FETCH_ALLOW_PRIVATE", False),
    "FETCH_TIMEOUT": env_float("RETAILPULSE_FETCH_TIMEOUT", 30.0),  # whole download, per image
    "FETCH_CONNECT_TIMEOUT": env_float("RETAILPULSE_FETCH_CONNECT_TIMEOUT", 5.0),
    "MAX_IMAGE_BYTES": env_int("RETAILPULSE_MAX_IMAGE_BYTES", 20 * 1024 * 1024),
    "MAX_IMAGE_PIXELS": env_int("RETAILPULSE_MAX_IMAGE_PIXELS", 64_000_000),
    "MAX_REDIRECTS": env_int("RETAILPULSE_MAX_REDIRECTS", 3),
    # Formats measured (of jobs.imaging.MEASURED_FORMATS; a system check refuses other names). A
    # well-formed image of any other format fails with "unsupported image format X".
    "IMAGE_FORMATS": env_names("RETAILPULSE_IMAGE_FORMATS", "JPEG,MPO,PNG,GIF,WEBP,BMP,TIFF,HEIF,AVIF"),
    # API keys (`manage.py create_client NAME`, `manage.py api_keys`) required on every /api/ call.
    "API_TOKENS": env_bool("RETAILPULSE_API_TOKENS", False),
    # Requests per client, e.g. "120/min"; empty means no limit.
    "THROTTLE_RATES": {
        "submit": env_rate("RETAILPULSE_THROTTLE_SUBMIT"),
        "read": env_rate("RETAILPULSE_THROTTLE_READ"),
    },
    # The most a submit may hold; a 400 names the limit it broke.
    "MAX_VISITS": env_int("RETAILPULSE_MAX_VISITS", 100_000, minimum=1),
    "MAX_IMAGES_PER_VISIT": env_int("RETAILPULSE_MAX_IMAGES_PER_VISIT", 1_000, minimum=1),
    "MAX_IMAGES_PER_JOB": env_int("RETAILPULSE_MAX_IMAGES_PER_JOB", 200_000, minimum=1),
    # The most images one client may have pending (ongoing jobs' images without an outcome); a
    # submit that would pass it gets a 429. 0: no quota.
    "CLIENT_MAX_PENDING_IMAGES": env_int("RETAILPULSE_CLIENT_MAX_PENDING_IMAGES", 0),
    # The most images of one chunk: a job is cut into a multiple of WORKERS equal chunks no bigger
    # than this (services.chunks.chunk_sizes). Bigger chunks pay fewer claims and fewer fetch tails;
    # a new job does not wait for them to end (services.chunks._make_way).
    "CHUNK_SIZE": env_int("RETAILPULSE_CHUNK_SIZE", 25_000, minimum=1),
    # The most connections one worker process opens to one image host (docs/configuration.md).
    "HOST_CONNECTIONS": env_int("RETAILPULSE_HOST_CONNECTIONS", 768, minimum=1),
    # Memory one worker process's downloads in flight may hold, in MiB: it bounds their number.
    "FETCH_MEMORY_MB": env_int("RETAILPULSE_FETCH_MEMORY_MB", 40, minimum=1),
    # A claim stops fetching after this long and hands the rest of its chunk back.
    "CHUNK_DEADLINE": env_float("RETAILPULSE_CHUNK_DEADLINE", 120.0),
    # A worker holds its chunk for this long unless it renews (every LEASE_RENEW seconds); a chunk
    # whose lease ran out (its worker died or froze) is claimed by any other worker.
    "LEASE_SECONDS": _lease_seconds,
    "LEASE_RENEW": env_float("RETAILPULSE_LEASE_RENEW", 1.5),
    # An idle worker process looks this often for a chunk nobody claimed (jobs.watchdog).
    "WATCH_EVERY": env_float("RETAILPULSE_WATCH_EVERY", 1.0),
    # Attempts of a chunk that raised (a database error mid-write): each backs off 2, 4, 8 ... s; the
    # last fails the chunk's remaining images with the error.
    "CHUNK_ATTEMPTS": env_int("RETAILPULSE_CHUNK_ATTEMPTS", 3, minimum=1),
    # An ongoing job with no image outcome for this long has its unfinished work queued again.
    "STALL_AFTER": env_int("RETAILPULSE_STALL_AFTER", 600),
    # A chunk whose lease ran out more often than this (its workers keep dying) fails its images.
    "MAX_DELIVERIES": env_int("RETAILPULSE_MAX_DELIVERIES", 5),
    # /readyz fails when chunks wait and no image outcome was recorded for this long.
    "READY_PROGRESS_AFTER": env_int("RETAILPULSE_READY_PROGRESS_AFTER", 60),
    # Days the per-minute outcome counts (the dashboard's) are kept; older ones are deleted hourly.
    "OUTCOME_COUNTS_DAYS": env_int("RETAILPULSE_OUTCOME_COUNTS_DAYS", 7),
    # Days a finished job is kept; older ones are removed with their visits and images by the
    # scheduler (services.retention). 0, the default, keeps every job: deleting clients' results
    # is the operator's decision (docs/configuration.md).
    "RETENTION_DAYS": env_float("RETAILPULSE_RETENTION_DAYS", 0.0, maximum=RETENTION_MAX_DAYS),
}

# --- Completion callbacks -------------------------------------------------------------------------
# The key of the X-RetailPulse-Signature HMAC. By default derived from SECRET_KEY (so it changes
# with it); set it to share a key with the receivers that is not the secret key itself.
RETAILPULSE_CALLBACK_SECRET = (
    env_str("RETAILPULSE_CALLBACK_SECRET", "")
    or hmac.new(SECRET_KEY.encode(), b"retailpulse completion callbacks", hashlib.sha256).hexdigest()
)
RETAILPULSE_CALLBACKS: dict[str, Any] = {
    "ATTEMPTS": env_int("RETAILPULSE_CALLBACK_ATTEMPTS", 5, minimum=1),  # the first POST and its retries
    "TIMEOUT": env_float("RETAILPULSE_CALLBACK_TIMEOUT", 10.0),  # seconds for one POST
    # Seconds before the first retry, doubled for each next one (due retries start on the
    # scheduler's 30 s tick).
    "BACKOFF": env_float("RETAILPULSE_CALLBACK_BACKOFF", 30.0),
}

# --- Caches ---------------------------------------------------------------------------------------
# qcluster writes its heartbeat (django-q2's cluster Stat) to the "cluster" cache every half second;
# it must be shared by every process, so it is a table of the database (created by the jobs
# migrations). /readyz, qinfo and qmonitor read it; jobs.heartbeat says why it is not a plain DatabaseCache.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "cluster": {"BACKEND": "jobs.ops.heartbeat.HeartbeatCache", "LOCATION": "retailpulse_cluster_cache"},
}

# --- django-q2 ------------------------------------------------------------------------------------
_task_timeout = int(RETAILPULSE["CHUNK_DEADLINE"]) + 10
Q_CLUSTER: dict[str, Any] = {
    "name": "retailpulse",
    "orm": "default",  # the queue lives in the same database: no extra service to run
    "workers": WORKERS,
    # Chunk tasks only wake a worker up (the lease decides who measures what), so prefetched and
    # redelivered tasks change no order: one claims the next chunk, or nothing.
    "queue_limit": WORKERS,
    "timeout": _task_timeout,
    "retry": _task_timeout + 10,
    # A worker process is replaced after a task once its memory passes this (KiB): about twice a
    # worker's peak under make bench, so only a leak or a pathological chunk hits it.
    "max_rss": env_int("RETAILPULSE_WORKER_MAX_RSS_MB", 400, minimum=1) * 1024,
    "max_attempts": 3,
    "ack_failures": True,
    "poll": 0.1,
    "save_limit": 100,
    "catch_up": False,
    "label": "Task queue",
    # Scale-out: run the scheduler (callback retries) in one cluster, RETAILPULSE_SCHEDULER=0 elsewhere.
    "scheduler": env_bool("RETAILPULSE_SCHEDULER", True),
    "cache": "cluster",
}

# LOG_FORMAT=json: one JSON object per line, with the event's fields (event, job_id, store_id, ...).
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper(),
    },
}
