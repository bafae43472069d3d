"""Settings for pytest: the real settings, with a throwaway secret key if none is set.

The key goes into the environment, so qcluster processes started by the tests sign and read
tasks with the same key.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")

from retailpulse.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = False  # the test client and live server speak plain HTTP
# Static files straight from the apps (no collectstatic before tests): plain storage, finders on.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
