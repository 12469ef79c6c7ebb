"""Playwright drives Debian's Chromium (installed by .ci/run); never a downloaded browser."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser.helpers import REPORT_CSP_VIOLATIONS

CHROMIUM = os.environ.get("TINYRAG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
        ],
    }


@pytest.fixture(scope="session", autouse=True)
def _sync_orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread for the whole session; the ORM
    calls of these tests (and the test database set-up) are still plain synchronous code."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def csp_violations(page) -> list[str]:
    """What the Content-Security-Policy blocked on any page this test opened."""
    found: list[str] = []
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    page.on(
        "console",
        lambda msg: (
            found.append(msg.text)
            if msg.type == "error"
            and ("CSP violation" in msg.text or "Content Security" in msg.text)
            else None
        ),
    )
    return found
