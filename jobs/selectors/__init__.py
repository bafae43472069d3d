"""Reads: what the API, the admin and the workers ask of jobs and their images."""

from jobs.selectors.results import *  # noqa: F403
