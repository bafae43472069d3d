"""Instructions a process executes, counted by valgrind's callgrind: the measured process turns the
counting on and off around what it measures (bench/instructions.py, bench/headers.py)."""

import os
import re
import subprocess
import sys
import tempfile


def count_instructions(script: str, *arguments: str) -> int:
    """The instructions counted while `script` runs with `arguments`, in a new process under callgrind."""
    with tempfile.TemporaryDirectory(prefix="rp-callgrind-") as folder:
        command = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={folder}/out"),
            *(sys.executable, script, *arguments),
        ]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", run.stderr)[1])


def set_counting(on: bool) -> None:
    """In the process under callgrind: count from here on, or stop counting."""
    subprocess.run(["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())], check=True)


def per_unit(script: str, arguments: list[str], units_option: str, units: int) -> float:
    """Instructions per unit of work (an image, a round): the difference between runs of 3 and 1
    times `units` (passed as `units_option`), over 2 times `units`: the process's start drops out."""
    more, fewer = (count_instructions(script, *arguments, units_option, str(n)) for n in (3 * units, units))
    return (more - fewer) / (2 * units)
