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

# django-q2 (1.11) runs its scheduler from the cluster's guard loop once the loop's cycles add up to
# 30 s, a sum it does not let one set (its GitHub issues 181 and 265). A guard cycle of 30 s makes
# the first cycle, right after the cluster starts, run it: tests that need the scheduler start a
# qcluster with TESTS_Q_GUARD_CYCLE=30 instead of waiting 30 s for its first run.
if os.environ.get("TESTS_Q_GUARD_CYCLE"):
    Q_CLUSTER = {**Q_CLUSTER, "guard_cycle": float(os.environ["TESTS_Q_GUARD_CYCLE"])}  # noqa: F405
