"""What every capture module shares: unpacking a Debian package, saving a report."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.fixture_labels import FIXTURES

CAPTURED = FIXTURES / "captured"


def unpack(packages: list[str], root: Path) -> Path:
    """Unpack Debian ``packages`` (``apt-get download`` + ``dpkg-deb -x``) under ``root``.

    Nothing is installed: the files land in ``root`` (made if missing) and the MTA
    is run from there. Packages already unpacked there are not fetched again.
    """
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for package in packages:
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        (deb,) = debs.glob(f"{package}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def save(mta: str, name: str, raw: bytes) -> Path:
    """Store one captured report as ``captured/<mta>/<name>.eml``, line ends as LF."""
    path = CAPTURED / mta / f"{name}.eml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.replace(b"\r\n", b"\n"))
    return path


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")
