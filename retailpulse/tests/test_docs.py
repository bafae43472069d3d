"""The API examples of the README and docs/ work as written.

Each `curl` line of a ```sh block (with its `\\` continuation lines) runs, in order, against a live
service (gunicorn + qcluster on a fresh test database with the sample store master), and its answer
must match the `# ...` comment lines under it: `# 201 {"job_id": 1}` is a status and a body, a
comment without a status means 200, and `...` stands for anything (a value, the rest of an object's
fields or of a list, part of a string or of a text answer). A JSON answer may differ from the
document only in spacing outside strings (the API sends `{"job_id":1}`): its members come in the
order shown, its numbers and strings as written. The examples' host becomes the test's
server and the sample payload's images are served by the local image server. Before each example
that is not a POST, the test waits for the jobs to end, as the documents say.
"""

import itertools
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from conftest import BASE_DIR
from jobs.models import Job
from jobs.tests.helpers import wait_until

DOCUMENTS = ["README.md", "docs/api.md", "docs/operations.md"]
DOCUMENTED_HOST = "http://127.0.0.1:8000"
# The sample payload's images (on the internet) and the local images that stand in for them.
SAMPLE_IMAGES = {
    "https://www.gstatic.com/webp/gallery/2.jpg": "/img/550x404.jpg",
    "https://www.gstatic.com/webp/gallery/3.jpg": "/img/1280x720.jpg",
}


@dataclass(frozen=True)
class Example:
    document: str
    line: int
    command: str
    status: int
    answer: str  # the expected body: a JSON pattern or a text pattern

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: {self.command}"


def examples(document: str) -> list[Example]:
    """The curl examples of a document's ```sh blocks, with the answers their comments show."""
    found, lines = [], (BASE_DIR / document).read_text().splitlines()
    in_sh_block, index = False, 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith("```"):
            in_sh_block = line.strip() == "```sh" and not in_sh_block
            continue
        if not in_sh_block or not line.startswith("curl "):
            continue
        start, command = index, line
        while command.endswith("\\"):
            command = command[:-1] + lines[index].strip()
            index += 1
        comments = []
        while index < len(lines) and lines[index].startswith("#"):
            comments.append(lines[index][1:].removeprefix(" "))
            index += 1
        expected = "\n".join(comments)
        assert expected, f"{document}:{start}: a curl example without its answer in a # line under it"
        status = re.match(r"(\d{3})(?: |$)", expected)
        found.append(
            Example(
                document,
                start,
                command,
                int(status.group(1)) if status else 200,
                expected[status.end() :] if status else expected,
            )
        )
    return found


def compact_json(text: str) -> str:
    """The text without the whitespace outside strings: what spacing alone may change."""
    out, in_string, index = [], False, 0
    while index < len(text):
        char = text[index]
        if in_string and char == "\\":
            out.append(text[index : index + 2])
            index += 2
            continue
        if char == '"':
            in_string = not in_string
        if in_string or not char.isspace():
            out.append(char)
        index += 1
    return "".join(out)


def text_pattern(text: str) -> re.Pattern:
    """`...` stands for anything; `, ...]` and `, ...}` also for nothing (a list or object that ends there)."""
    parts = text.split("...")
    regex = re.escape(parts[0])
    for before, after in itertools.pairwise(parts):
        if before.endswith(",") and after[:1] in ("]", "}"):
            regex = regex.removesuffix(re.escape(",")) + "(?:,.*)?"
        else:
            regex += ".*"
        regex += re.escape(after)
    return re.compile(regex, re.DOTALL)


def answer_matches(expected: str, body: str) -> bool:
    """A JSON answer as the document writes it, but for spacing outside strings: the same members
    in the same order, the same numbers and strings as the API sends them; a text answer as written."""
    if expected.lstrip().startswith(("{", "[")):
        return text_pattern(compact_json(expected)).fullmatch(compact_json(body)) is not None
    return text_pattern(expected.strip()).fullmatch(body.strip()) is not None


def run(example: Example, folder: Path, local: dict[str, str]) -> tuple[int, str]:
    """Run the example's command in a shell, as a reader would; return the status and the body."""
    command = example.command
    for documented, served in local.items():
        command = command.replace(documented, served)
    assert command.startswith("curl ")
    command = "curl -w '%{stderr}%{http_code}' " + command.removeprefix("curl ")
    result = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{example}: {result.stderr}"
    redirected = re.search(r">\s*(\S+)\s*$", command)
    body = (folder / shlex.split(redirected.group(1))[0]).read_text() if redirected else result.stdout
    return int(result.stderr[-3:]), body


@pytest.mark.parametrize(
    ("pattern", "answer", "expected"),
    [
        ('{"job_id": 1}', '{"job_id": 1}', True),
        ('{"job_id": 1}', '{"job_id":1}', True),
        ('{"status": "completed", "job_id": 1}', '{"job_id":1,"status":"completed"}', False),
        ('{"name": "BHARAT STORE"}', '{"name":"BHARAT  STORE"}', False),
        ('{"progress": 1.0}', '{"progress":1}', False),
        ('{"results": [{"id": 1, ...}, ...]}', '{"results":[{"id":1,"n":2}]}', True),
        ('{"results": [{"id": 1, ...}, ...]}', '{"results":[{"id":1},{"id":2}]}', True),
        ('{"job_id": 1}', '{"job_id": 2}', False),
        ('{"job_id": 1}', '{"job_id": 1, "extra": 0}', False),
        ('{"job_id": 1, ...}', '{"job_id": 1, "extra": 0}', True),
        ('{"at": "2024-...Z", "n": ...}', '{"at": "2024-01-21T16:23:40Z", "n": [1]}', True),
        ('{"error": [...]}', '{"error": []}', True),
        ('{"data": [{"n": 1}, ...]}', '{"data": []}', False),
        ('{"progress": 1.0}', '{"progress": true}', False),
        ("id,url\n1,https://...\n...", "id,url\n1,https://x/y.jpg\n2,https://x/z.jpg\n", True),
        ("id,url\n1,https://...", "id,store\n1,https://x/y.jpg", False),
    ],
)
def test_an_answer_matches_the_pattern_a_document_shows_and_nothing_else(pattern, answer, expected):
    assert answer_matches(pattern, answer) is expected


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_the_api_examples_answer_as_documented(document, start_web, start_cluster, image_server, tmp_path):
    found = examples(document)
    assert found, f"{document} has no curl example"
    call_command("load_stores", str(BASE_DIR / "fixtures" / "stores.csv"), verbosity=0)
    web = start_web()
    cluster = start_cluster()
    # Its workers first: the examples' jobs need them.
    wait_until(cluster.worker_pids, timeout=30, what="the qcluster's workers")
    local = {DOCUMENTED_HOST: web.url, **{url: image_server.url(path) for url, path in SAMPLE_IMAGES.items()}}
    payload = (BASE_DIR / "fixtures" / "sample_payload.json").read_text()
    for url, path in SAMPLE_IMAGES.items():
        payload = payload.replace(url, image_server.url(path))
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "sample_payload.json").write_text(payload)
    wait_until(
        lambda: requests.get(f"{web.url}/readyz", timeout=2).status_code == 200,
        timeout=30,
        what="/readyz",
        ignore=(requests.ConnectionError, requests.Timeout),  # starting, or slow on a loaded machine
    )

    for example in found:
        if "-X POST" not in example.command:
            wait_until(lambda: not Job.objects.filter(status="ongoing").exists(), what="the jobs to end")
        status, body = run(example, tmp_path, local)
        expected = example.answer
        for documented, served in local.items():
            expected = expected.replace(documented, served)
        assert (status, answer_matches(expected, body)) == (example.status, True), (
            f"{example}\nexpected: {example.status} {expected}\nanswered: {status} {body}"
        )
