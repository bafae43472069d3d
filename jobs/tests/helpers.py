import time


def submit(client, visits: list[dict]):
    return client.post("/api/submit/", {"count": len(visits), "visits": visits}, content_type="application/json")


def visit(store_id: str, *urls: str, visit_time: str = "2024-01-21T16:23:40Z") -> dict:
    return {"store_id": store_id, "image_url": list(urls), "visit_time": visit_time}


def wait_for_job(client, job_id: int, timeout: float = 60) -> dict:
    """Poll the status API, as a client does, until the job ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/status?jobid={job_id}").json()
        if body["status"] != "ongoing":
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still ongoing after {timeout} s: {client.get(f'/api/jobs/{job_id}/').json()}")


def wait_until(check, timeout: float = 20):
    """Poll `check` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return result
