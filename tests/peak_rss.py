"""Run ``manage.py``-style arguments and write this process's peak RSS (KiB) to a file.

``ru_maxrss`` of a child includes the memory of the parent it was forked from, so a
test can't measure a command's own peak from outside. ``VmHWM`` in
``/proc/self/status`` is reset by ``exec``, so the command reports it at exit.
Usage: ``PEAK_RSS_FILE=path python -m tests.peak_rss handle_bounce -- ...``.
"""

import atexit
import os
import sys
from pathlib import Path

from django.core.management import execute_from_command_line


def _write_peak() -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            Path(os.environ["PEAK_RSS_FILE"]).write_text(line.split()[1])


if __name__ == "__main__":
    atexit.register(_write_peak)
    execute_from_command_line(["manage.py", *sys.argv[1:]])
