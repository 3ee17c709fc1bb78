"""HTML reports printed to PDF by a headless Chromium (the browser's own print engine, so
the PDF shows what the HTML shows; no PDF library in the runtime).

Chromium is a system program here, not a Python dependency: Debian's ``chromium`` package,
or any Chrome, found on the PATH or configured (``evidence.chromium``). The page is a local
file with no external resource; background networking is switched off.
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404 - a fixed program with fixed arguments, no shell
import tempfile
from pathlib import Path

from creditops.errors import ConfigError, CreditopsError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(configured: str | None) -> str | None:
    """The configured executable if it exists, else the first candidate on the PATH."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ConfigError(
                f"evidence.chromium is {configured!r}, which is not an executable",
                field="evidence.chromium",
            )
        return found
    return next((p for p in map(shutil.which, CANDIDATES) if p is not None), None)


def print_pdf(html: Path, pdf: Path, chromium: str, timeout_s: float) -> Path:
    """Print ``html`` to ``pdf``; one clear error if Chromium fails or prints nothing."""
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="creditops-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # also as root in a container; the page is our own local file
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(  # nosec B603 - see the import
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise CreditopsError(f"Chromium did not print {pdf.name} in {timeout_s:g} s") from None
    if done.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise CreditopsError(f"Chromium could not print {pdf.name}: {last}")
    return pdf
