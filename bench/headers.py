"""Instructions per image of the header reader alone (valgrind's callgrind), by format.

    .venv/bin/python bench/headers.py [--rounds 20]

The files of the reader's corpus (jobs/tests/worker/imaging/headers/corpus) that it measures, fed
in 4 KB pieces as a download arrives. A format's count is the difference between runs of 3N and N
rounds over its files, over 2N: the process's start drops out. Instructions, not seconds: they
repeat to a fraction of a percent on a shared machine, so a change to one format's reader is
weighed here. A few minutes in all.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, for its header reader

from callgrind import per_unit, set_counting

from jobs.worker.imaging.headers import MEASURED_FORMATS, HeaderReader, ImageError

CORPUS = Path(__file__).resolve().parent.parent / "jobs/tests/worker/imaging/headers/corpus"
PIECE = 4096


def corpus_by_format() -> dict[str, list[list[bytes]]]:
    """The corpus's files the reader measures, each cut into pieces, by the format it finds."""
    found = defaultdict(list)
    for path in sorted(CORPUS.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        for image_format in MEASURED_FORMATS:
            try:
                read(pieces := [data[i : i + PIECE] for i in range(0, len(data), PIECE)], (image_format,))
            except ImageError:
                continue
            found[image_format].append(pieces)
    return found


def read(pieces: list[bytes], formats=MEASURED_FORMATS) -> tuple[int, int]:
    reader = HeaderReader(formats, 10**12)
    for piece in pieces:
        reader.feed(piece)
    return reader.close()


def measure(image_format: str, rounds: int) -> None:
    """Runs under valgrind: reads the format's files `rounds` times, counted."""
    files = corpus_by_format()[image_format]
    set_counting(True)
    for _ in range(rounds):
        for pieces in files:
            read(pieces)
    set_counting(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--measure", choices=MEASURED_FORMATS, help=argparse.SUPPRESS)  # the process under valgrind
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.rounds)
        return
    print("| format | files | thousand instructions per image |\n| --- | --- | --- |")
    found = corpus_by_format()
    for image_format in (image_format for image_format in MEASURED_FORMATS if image_format in found):
        files = found[image_format]
        per_image = per_unit(__file__, ["--measure", image_format], "--rounds", args.rounds) / len(files)
        print(f"| {image_format} | {len(files)} | {per_image / 1e3:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
