"""The user at the provider's approval page, headless (``manage.py demo_live --auto-approve``).

Only HTTP, as a browser would: sign in at the site's login page (an HTTP session: its cookies
and the form's CSRF token), load the approval page (``/o/approvals/``) until the request
showing the expected binding message is there, read what the page shows of it, and press its
"Approve" button (the request's own form, with its CSRF token). Nothing of the provider's
Python is called, so the decision goes through the page's checks and audit as a user's does.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from example_project.demo_services.launch import Form, Page, read_page

APPROVALS = "/o/approvals/"
# Each request on the page is a section of its own, with its text and its form.
_SECTION = re.compile(r'(?=<section class="approval-request")')


@dataclass(frozen=True)
class Approval:
    """What the user saw of the request, and the page's answer to the decision."""

    shown: str
    answer: str
    url: str
    #: the page noted the decision as an approval (its note's class, not its words)
    approved: bool = False


def sign_in(browser: httpx.Client, username: str, password: str, next_url: str = APPROVALS) -> None:
    """Sign in at the site's login page with ``browser`` (its cookies keep the session)."""
    page = browser.get(f"/accounts/login/?next={next_url}")
    form = next((f for f in read_page(str(page.url), page.text).forms if "password" in f.fields), None)
    if page.status_code != 200 or form is None:
        raise RuntimeError(f"no sign-in form at {page.url} ({page.status_code})")
    signed_in = browser.post(
        form.action,
        data={**form.fields, "username": username, "password": password},
        headers={"Referer": str(page.url)},
    )
    if signed_in.status_code != 302:
        raise RuntimeError(f"the demo user could not sign in ({signed_in.status_code})")


def pending_request(page_url: str, html: str, binding_message: str) -> tuple[Page, Form] | None:
    """The section of the approval page that shows ``binding_message``, and its form."""
    for chunk in _SECTION.split(html)[1:]:
        section = read_page(page_url, chunk)
        forms = [f for f in section.forms if APPROVALS in f.action]
        if binding_message in section.text and "Approve" in section.text and forms:
            return section, forms[0]
    return None


def approve_on_page(
    issuer: str,
    username: str,
    password: str,
    *,
    binding_message: str,
    timeout: float = 60.0,
    every: float = 0.5,
) -> Approval:
    """Sign in, wait for the request showing ``binding_message`` on the approval page, approve it."""
    with httpx.Client(base_url=issuer, follow_redirects=False, timeout=30) as browser:
        sign_in(browser, username, password)
        deadline = time.monotonic() + timeout
        while True:
            page = browser.get(APPROVALS)
            if page.status_code != 200:
                raise RuntimeError(f"the approval page answered {page.status_code}")
            found = pending_request(str(page.url), page.text, binding_message)
            if found is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no request showing {binding_message!r} came to the approval page")
            time.sleep(every)
        section, form = found
        # The button the user presses: decision=approve (the form's other button says deny).
        answer = browser.post(
            form.action, data={**form.fields, "decision": "approve"}, headers={"Referer": str(page.url)}
        )
        if answer.status_code != 302:
            raise RuntimeError(f"the approval was refused ({answer.status_code})")
        after = browser.get(urljoin(str(page.url), answer.headers["location"]))
        decided = read_page(str(after.url), after.text)
        return Approval(
            shown=section.text,
            answer=decided.text,
            url=str(page.url),
            approved='id="approval-decided"' in after.text and "approval-note-approved" in after.text,
        )
