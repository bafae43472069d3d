"""System checks of the jobs settings (run by manage.py migrate and check, so before `make run`
starts the service; qcluster skips them there)."""

from django.conf import settings
from django.core.checks import Error, register


@register
def check_image_formats(app_configs, **kwargs) -> list[Error]:
    # Imported when the check runs: the fetching code brings aiohttp (about 20 MiB of RSS), which
    # web and qcluster processes, which load this module but run no checks, need not hold.
    from jobs.worker.imaging import MEASURED_FORMATS

    formats = settings.RETAILPULSE["IMAGE_FORMATS"]
    unknown = [name for name in formats if name not in MEASURED_FORMATS]
    if not formats or unknown:
        return [
            Error(
                f"RETAILPULSE_IMAGE_FORMATS names {', '.join(unknown) or 'no format'}",
                hint=f"Choose among {', '.join(MEASURED_FORMATS)}.",
                id="retailpulse.E001",
            )
        ]
    return []


@register
def check_outcome_counts_days(app_configs, **kwargs) -> list[Error]:
    # The dashboard reads the last hour's counts: pruning them younger than a day would empty it.
    if settings.RETAILPULSE["OUTCOME_COUNTS_DAYS"] < 1:
        return [
            Error(
                f"RETAILPULSE_OUTCOME_COUNTS_DAYS={settings.RETAILPULSE['OUTCOME_COUNTS_DAYS']}",
                hint="Keep the dashboard's counts at least 1 day.",
                id="retailpulse.E002",
            )
        ]
    return []
