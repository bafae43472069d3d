"""CPU per request of GET /api/status, of a 5-image POST /api/submit/, and of /healthz (the bare
cost of a request), in one process.

    .venv/bin/python bench/request_cpu.py [--requests 3000] [--rounds 3]

Each request goes through Django's WSGI handler, middleware, DRF and the service's queries, on a
fresh SQLite database; no HTTP server, so the figures are the service's own code. Every waiting
client repeats the status request: with the bench's ten polls a second per job, each millisecond
here is 1 % of a core per polled job. A submit is made a tenth as often as the others are.
"""

import argparse
import io
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from service import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_django_here("sqlite", Path(tempfile.mkdtemp(prefix="rp-requests-")), DJANGO_ALLOWED_HOSTS="127.0.0.1")
    from django.core.wsgi import get_wsgi_application

    from jobs import services

    job = services.submit_job(
        visits=[services.VisitInput("B00001", ["http://127.0.0.1:1/a.jpg"], datetime.now(UTC))]
    ).job
    application = get_wsgi_application()

    def request(method: str, path: str, query: str = "", body: bytes = b"") -> str:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        answered = []
        b"".join(application(environ, lambda status, headers, *_: answered.append(status)))
        return answered[0]

    submits = iter(range(10**9))

    def submit() -> str:
        urls = [f"http://127.0.0.1:1/{next(submits)}-{i}.jpg" for i in range(5)]
        visits = [{"store_id": "B00001", "image_url": urls, "visit_time": "2024-01-21T16:23:40Z"}]
        return request("POST", "/api/submit/", body=json.dumps({"count": 1, "visits": visits}).encode())

    cases = [
        ("GET /api/status", lambda: request("GET", "/api/status", f"jobid={job.pk}"), "200 OK", args.requests),
        ("GET /healthz", lambda: request("GET", "/healthz"), "200 OK", args.requests),
        ("POST /api/submit/, 5 images", submit, "201 Created", args.requests // 10),
    ]
    for _ in range(args.rounds):
        for name, send, expected, count in cases:
            for _ in range(count // 10):  # warm up
                send()
            started = time.process_time()
            for _ in range(count):
                answer = send()
            assert answer == expected, answer
            print(f"{name}: {(time.process_time() - started) / count * 1e3:.3f} ms of CPU per request")


if __name__ == "__main__":
    main()
