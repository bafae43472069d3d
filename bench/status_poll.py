"""CPU per request of GET /api/status (and of /healthz, the bare cost of a request), in one process.

    .venv/bin/python bench/status_poll.py [--requests 3000] [--rounds 3]

Each request goes through Django's WSGI handler, middleware, DRF and the status query, on a fresh
SQLite database holding one job; no HTTP server, so the figures are the service's own code. Every
waiting client repeats this request: with the bench's ten polls a second per job, each millisecond
here is 1 % of a core per polled job.
"""

import argparse
import io
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
    setup_django_here("sqlite", Path(tempfile.mkdtemp(prefix="rp-status-")), DJANGO_ALLOWED_HOSTS="127.0.0.1")
    from django.core.wsgi import get_wsgi_application

    from jobs import services

    job = services.submit_job([services.VisitInput("B00001", ["http://127.0.0.1:1/a.jpg"], datetime.now(UTC))]).job
    application = get_wsgi_application()

    def get(path: str, query: str) -> str:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
        }
        answered = []
        b"".join(application(environ, lambda status, headers, *_: answered.append(status)))
        return answered[0]

    for _ in range(args.rounds):
        for path, query in (("/api/status", f"jobid={job.pk}"), ("/healthz", "")):
            for _ in range(args.requests // 10):  # warm up
                get(path, query)
            started = time.process_time()
            for _ in range(args.requests):
                answer = get(path, query)
            assert answer == "200 OK", answer
            print(f"{path}: {(time.process_time() - started) / args.requests * 1e3:.3f} ms of CPU per request")


if __name__ == "__main__":
    main()
