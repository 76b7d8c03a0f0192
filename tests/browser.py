"""Open a static HTML report from disk in Debian's headless chromium and check it like a reader would.

Driven by Selenium through Debian's ``chromium-driver`` (the same chromium build; ``make chromium``
installs both). ``check_report`` starts at the index, follows every link to a local page, and on each page
checks that every ``<img>`` (lazy ones loaded first: ``load_images``) decoded (``naturalWidth > 0``) from a
non-empty file and that every link points at a file that exists (or an anchor on the page); it saves a
full-page screenshot of the index.

As a command: ``python tests/browser.py reports/index.html reports/screenshot.png``.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]

_IMAGES = """return Array.from(document.images).map(i => ({src: i.getAttribute('src'), url: i.currentSrc || i.src,
    complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"""
_LINKS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"
_IDS = "return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"
_EAGER = "document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })"
_PENDING = "return Array.from(document.images).filter(i => !i.complete).length"


@dataclass
class ReportCheck:
    pages: list[Path] = field(default_factory=list)  # every page loaded, index first
    images: dict[Path, list[dict]] = field(default_factory=dict)  # page -> its images as the browser saw them
    links: dict[Path, list[str]] = field(default_factory=dict)  # page -> hrefs
    problems: list[str] = field(default_factory=list)
    screenshot: Path | None = None


@contextmanager
def chromium(user_data_dir: str | Path | None = None):
    """A headless chromium WebDriver with a fresh profile; fails (never skips) when chromium is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: `make chromium` installs Debian's chromium and "
                           "chromium-driver (apt-get, as root or with sudo)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as fresh:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={user_data_dir or fresh}")
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(120)
            yield driver
        finally:
            driver.quit()


def screenshot(driver, out: str | Path) -> Path:
    """The whole page (beyond the viewport) as PNG, via the DevTools protocol."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(base64.b64decode(shot["data"]))
    tmp.replace(out)
    return out


def load_images(driver, timeout: float = 60.0) -> None:
    """Every image of the page loads now, lazy ones too (as if the reader scrolled to each); returns when each
    has completed (decoded or broken) or after ``timeout`` seconds (the images' checks then name the rest)."""
    driver.execute_script(_EAGER)
    deadline = time.monotonic() + timeout
    while driver.execute_script(_PENDING) and time.monotonic() < deadline:
        time.sleep(0.05)


def _local_target(href: str, page: Path) -> tuple[Path | None, str]:
    """(file the link points at or None for an external / same-page link, fragment)."""
    parts = urlsplit(href)
    if parts.scheme in ("http", "https", "mailto", "data"):
        return None, ""
    if parts.scheme == "file":
        return Path(unquote(parts.path)), parts.fragment
    if not parts.path:
        return None, parts.fragment
    return (page.parent / unquote(parts.path)).resolve(), parts.fragment


def check_report(index: str | Path, screenshot_path: str | Path | None = None) -> ReportCheck:
    index = Path(index).resolve()
    result = ReportCheck()
    if not index.is_file():
        result.problems.append(f"{index}: no such report")
        return result
    todo, seen = [index], {index}
    with chromium() as driver:
        while todo:
            page = todo.pop(0)
            driver.get(page.as_uri())
            state = driver.execute_script("return document.readyState")
            if state != "complete" or not driver.title:
                result.problems.append(f"{page}: did not load (readyState {state!r}, title {driver.title!r})")
            result.pages.append(page)
            load_images(driver)
            images = result.images[page] = driver.execute_script(_IMAGES)
            for img in images:
                target, _ = _local_target(img["src"] or "", page)
                if not (img["complete"] and img["width"] > 0 and img["height"] > 0):
                    result.problems.append(f"{page.name}: image {img['src']} did not load ({img})")
                if target is None or not target.is_file() or target.stat().st_size == 0:
                    result.problems.append(f"{page.name}: image {img['src']} is not a non-empty local file")
            ids = set(driver.execute_script(_IDS))
            links = result.links[page] = driver.execute_script(_LINKS)
            for href in links:
                target, fragment = _local_target(href, page)
                if target is None:
                    if fragment and fragment not in ids:
                        result.problems.append(f"{page.name}: link {href} names no element on the page")
                    elif not fragment:
                        result.problems.append(f"{page.name}: link {href} leaves the report (it must open from disk)")
                    continue
                if not target.is_file():
                    result.problems.append(f"{page.name}: broken link {href} ({target} does not exist)")
                elif target.suffix == ".html" and target not in seen:
                    seen.add(target)
                    todo.append(target)
            if page == index and screenshot_path is not None:
                result.screenshot = screenshot(driver, screenshot_path)
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/browser.py REPORT.html [SCREENSHOT.png]")
    check = check_report(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
    print(json.dumps({"pages": [str(p) for p in check.pages], "images": sum(map(len, check.images.values())),
                      "links": sum(map(len, check.links.values())), "screenshot": str(check.screenshot),
                      "problems": check.problems}, indent=2))
    sys.exit(1 if check.problems else 0)
