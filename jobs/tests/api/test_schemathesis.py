"""Schemathesis as a client's CI runs it, `schemathesis run <base>/api/schema/?format=json --checks all`,
against gunicorn on the test database: every check and phase, with API tokens off and on, a fixed
seed (reproducible) and a random one (schemathesis prints it). schemathesis.toml, read from the
repository's folder, holds the rules a JSON Schema cannot state."""

import random
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import BASE_DIR
from jobs import services
from jobs.services import VisitInput
from jobs.services.outcomes import Outcome
from stores.services import load_store_master

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
SEEDS = {"fixed-seed": 1, "random-seed": random.randrange(2**32)}
# Per operation and phase; with the coverage phase's own cases, about 400 requests a run.
MAX_EXAMPLES = 10


@pytest.fixture
def measured_store_master(transactional_db):
    """The sample store master, and a measured image of one of its stores for GET /api/visits."""
    with (BASE_DIR / "fixtures" / "stores.csv").open("rb") as csv_file:
        load_store_master(csv_file)
    visit = VisitInput("SAMPLE-00001", ["https://img.example.com/1.jpg"], datetime(2024, 1, 21, 16, 23, 40, tzinfo=UTC))
    job = services.submit_job(visits=[visit]).job
    services.record_outcomes(job_id=job.pk, outcomes=[Outcome(job.images.get().pk, 640, 480)])


@pytest.mark.parametrize("seed", SEEDS.values(), ids=SEEDS.keys())
@pytest.mark.parametrize("tokens", ["off", "on"])
def test_schemathesis_with_every_check_passes(start_web, measured_store_master, tokens, seed):
    headers = []
    if tokens == "on":
        _client, key = services.create_client(name="schemathesis")
        headers = ["--header", f"Authorization: Token {key}"]
    web = start_web(RETAILPULSE_API_TOKENS="1" if tokens == "on" else "0")

    command = [SCHEMATHESIS, "run", f"{web.url}/api/schema/?format=json", "--checks", "all", *headers]
    options = ["--seed", str(seed), "--max-examples", str(MAX_EXAMPLES), "--generation-database", "none"]
    run = subprocess.run(
        [*command, *options, "--wait-for-schema", "30", "--no-color"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert re.search(r"\b([1-9][0-9]+) generated, \1 passed\b", run.stdout), run.stdout[-2_000:]
