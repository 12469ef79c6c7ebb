"""What the browser tests share: screenshots at a laptop's and a phone's width, a logged-in
user, and the checks every page must pass at both widths."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Chromium reports each blocked script, style, handler or image as a `securitypolicyviolation`
# event; printed as a console error, it reaches the test through Playwright's console events.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile}:${e.lineNumber}`);
});
"""
WIDTHS = (1280, 390)  # a laptop, a phone
PHONE = {"width": 390, "height": 844}
PASSWORD = "a-long-unusual-passphrase-9"


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: nothing scrolls sideways)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def screenshots(page, name: str) -> None:
    """Full-page screenshots at each width in WIDTHS (artifacts/<name>-<width>.png); at every
    width the page must fit, nothing wider than the viewport."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        overflow = horizontal_overflow(page)
        assert overflow <= 0, f"{name} at {width} px is {overflow} px too wide"
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def log_in(page, live_server, username: str) -> None:
    """Log a user whose password is PASSWORD in through the login page (with or without
    JavaScript: it is a plain form)."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def log_in_new_user(page, live_server, django_user_model, username: str, **extra):
    """A user made for the test (extra: is_staff=True...), logged in through the login page."""
    user = django_user_model.objects.create_user(username, password=PASSWORD, **extra)
    log_in(page, live_server, username)
    return user
