from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self) -> None:
        # The admin lives with the operators' code (jobs.ops), not in jobs/admin.py where autodiscovery looks.
        from jobs import checks  # noqa: F401  (the system checks)
        from jobs.ops import admin  # noqa: F401  (the admin's models and actions)
        from jobs.worker import watchdog  # noqa: F401  (the watchdog's post_spawn receiver)
