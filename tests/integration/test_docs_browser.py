"""/docs and /redoc in a real browser with the network off (issue 15, section 3).

A real ``creditops serve`` on loopback; Debian's chromium (``scripts/ensure_browser.sh``)
driven by Playwright, with every request not to 127.0.0.1 aborted and recorded. The pages
must render their operations from the package's own assets, and *Authorize* with a real
key, then *Try it out* and *Execute* on predict, must show a 200 answer.

The test also takes the README's screenshots (/docs and the model's evaluation report):
into ``docs/images/`` with ``CREDITOPS_UPDATE_SCREENSHOTS=1``, otherwise into a temporary
folder; either way each image must have the expected size and not be blank.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright import sync_api  # the dev extra's; it drives Debian's chromium

from tests.factories import train_demo_model
from tests.integration.server_harness import create_key, running_server, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
LOCAL_SCHEMES = ("file", "data", "blob")  # the report is a file; pages may make data: URLs


def chromium_path() -> str:
    found = os.environ.get("CREDITOPS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("chromium is missing: run scripts/ensure_browser.sh (make browser)")
    return found


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs-browser") / "home"
    train_demo_model(path)
    return path


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CREDITOPS_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "images"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[sync_api.Page, list[str]]]:
    """A page in a fresh profile whose requests leave 127.0.0.1 never (they are recorded)."""
    outside: list[str] = []

    def loopback_only(route: sync_api.Route) -> None:
        url = urlsplit(route.request.url)
        web = url.scheme in ("http", "https")
        if (web and url.hostname != "127.0.0.1") or not (web or url.scheme in LOCAL_SCHEMES):
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium_path(),
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport=VIEWPORT,
            offline=False,
        )
        try:
            context.route("**/*", loopback_only)
            context.set_default_timeout(TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            yield page, outside
        finally:
            context.close()


def save_screenshot(page: sync_api.Page, path: Path) -> None:
    """A viewport screenshot, reduced to a 256-colour PNG (small enough for the README)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw))
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)
    raw.unlink()
    check_image(path)


def check_image(path: Path) -> None:
    with Image.open(path) as image:
        assert image.size == (VIEWPORT["width"], VIEWPORT["height"]), image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 20, f"{path} looks blank"
    commonest = max(count for count, _ in colours)
    assert commonest < 0.97 * VIEWPORT["width"] * VIEWPORT["height"], f"{path} looks blank"


def operation(page: sync_api.Page, method: str, path: str) -> sync_api.Locator:
    """Swagger UI's block of one operation."""
    summary = page.locator(f'.opblock-summary-path[data-path="{path}"]')
    return page.locator(f".opblock-{method}").filter(has=summary)


def test_docs_work_offline_and_try_it_out_decides(
    home: Path, tmp_path: Path, screenshots: Path, browser_page: tuple[sync_api.Page, list[str]]
) -> None:
    started = time.monotonic()
    url = f"sqlite:///{tmp_path / 'docs.db'}"
    key = create_key(service_env(home, url), tmp_path, "docs", ["predict"])
    p, outside = browser_page
    with running_server(home, url, tmp_path / "server.log") as server:
        serving = time.monotonic()
        p.goto(f"{server.base_url}/docs")
        predict = operation(p, "post", "/v1/models/taiwan/predict")
        predict.wait_for()
        assert p.locator(".opblock").count() > 40
        assert operation(p, "post", "/drift/data-drift").count() == 1
        save_screenshot(p, screenshots / "api-docs.png")

        # Authorize with a real key (the bearer scheme), then try predict with its example.
        p.locator("button.authorize").first.click()
        bearer = p.locator(".auth-container").filter(has_text="bearer")
        bearer.locator("input").first.fill(key.key)
        bearer.locator("button.authorize").click()
        p.locator("button.btn-done").first.click()
        predict.locator(".opblock-summary").click()
        predict.locator("button.try-out__btn").click()
        predict.locator("button.execute").click()
        status = predict.locator(".live-responses-table .response .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "200", predict.inner_text()
        assert '"decision"' in predict.locator(".live-responses-table").inner_text()

        errors: list[str] = []
        p.on("pageerror", lambda error: errors.append(str(error)))
        p.goto(f"{server.base_url}/redoc")
        heading = p.locator("h2", has_text="Decide with model 'taiwan': one applicant or a batch")
        heading.first.wait_for()
        assert p.locator("h2", has_text="Seed route").count() >= 4
        assert errors == [], errors
        browsing = time.monotonic() - serving
    assert outside == [], f"the pages asked for {outside}"
    print(f"server start {serving - started:.1f} s, browser {browsing:.1f} s")


def test_the_evaluation_report_renders_offline(
    home: Path, screenshots: Path, browser_page: tuple[sync_api.Page, list[str]]
) -> None:
    p, outside = browser_page
    reports = sorted((home / "reports" / "taiwan").glob("v*/evaluation.html"))
    assert reports, f"no evaluation report under {home / 'reports'}"
    p.goto(reports[-1].as_uri())
    p.wait_for_load_state("load")
    images = p.locator("img")
    assert images.count() > 0
    assert all(
        p.evaluate("(img) => img.complete && img.naturalWidth > 0", images.nth(i).element_handle())
        for i in range(images.count())
    )
    save_screenshot(p, screenshots / "evaluation-report.png")
    assert outside == [], f"the report asked for {outside}"
