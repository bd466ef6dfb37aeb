"""The signing keys' admin list: "Rotate keys now" as a button (a confirmation page, then a
POST with CSRF and the change permission), and a list readable at a glance: state badges,
age, when the next rotation is due, shortened kids with the whole one in their title."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, rotation

CHANGELIST = "/admin/delegation_idp/signingkey/"
ROTATE = f"{CHANGELIST}rotate/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def root() -> Client:
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return browser


def staff(*codenames: str) -> Client:
    user = get_user_model().objects.create_user("staff-" + "-".join(codenames), password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    browser = Client()
    browser.force_login(user)
    return browser


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- the button ----------------------------------------------------------------------------


def test_the_list_has_a_rotate_button_and_no_rotate_action(root):
    keys.ensure_current_key()
    page = root.get(CHANGELIST)
    content = page.content.decode()
    assert 'class="object-tools"' in content
    assert re.search(rf'<a href="{ROTATE}" id="rotate-keys"[^>]*>Rotate keys now</a>', content)
    actions = [value for value, _label in page.context["action_form"].fields["action"].choices]
    assert "rotate" not in actions and "revoke" in actions  # the emergency revocation stays


def test_get_shows_a_confirmation_and_never_rotates(root):
    current = keys.ensure_current_key()
    page = root.get(ROTATE)
    assert page.status_code == 200
    assert page.templates[0].name == "admin/delegation_idp/signingkey/rotate_confirmation.html"
    content = page.content.decode()
    assert 'method="post"' in content and "csrfmiddlewaretoken" in content
    assert "publishes a new next key" in content and current.kid in content
    assert "delegation_idp/admin.css" in content  # the admin's look, dark mode included
    assert not SigningKey.objects.filter(state=SigningKey.NEXT).exists()


def test_post_publishes_a_next_key_and_says_so(root):
    keys.ensure_current_key()
    done = root.post(ROTATE, follow=True)
    assert done.redirect_chain == [(CHANGELIST, 302)]
    upcoming = SigningKey.objects.get(state=SigningKey.NEXT)
    [message] = messages_of(done)
    assert message.startswith(f"Published a new next key {upcoming.kid}; it starts signing at ")
    assert "one JWKS cache lifetime later" in message


def test_a_second_rotation_says_a_next_key_is_already_waiting(root):
    keys.ensure_current_key()
    root.post(ROTATE)
    upcoming = SigningKey.objects.get(state=SigningKey.NEXT)
    page = root.get(ROTATE).content.decode()
    assert "A next key is already published and waiting" in page and upcoming.kid in page
    again = root.post(ROTATE, follow=True)
    [message] = messages_of(again)
    assert message.startswith(f"Nothing new was published: a next key {upcoming.kid} is already waiting")
    assert SigningKey.objects.filter(state=SigningKey.NEXT).count() == 1


def test_the_post_needs_the_csrf_token():
    keys.ensure_current_key()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    assert browser.post(ROTATE).status_code == 403
    assert not SigningKey.objects.filter(state=SigningKey.NEXT).exists()
    page = browser.get(ROTATE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(ROTATE, {"csrfmiddlewaretoken": token}).status_code == 302
    assert SigningKey.objects.filter(state=SigningKey.NEXT).count() == 1


def test_staff_without_the_change_permission_get_403_and_no_button():
    keys.ensure_current_key()
    viewer = staff("view_signingkey")
    assert viewer.get(CHANGELIST).status_code == 200
    assert 'id="rotate-keys"' not in viewer.get(CHANGELIST).content.decode()
    assert viewer.get(ROTATE).status_code == 403
    assert viewer.post(ROTATE).status_code == 403
    assert not SigningKey.objects.filter(state=SigningKey.NEXT).exists()


def test_with_the_change_permission_staff_may_rotate():
    keys.ensure_current_key()
    operator = staff("view_signingkey", "change_signingkey")
    assert 'id="rotate-keys"' in operator.get(CHANGELIST).content.decode()
    assert operator.post(ROTATE).status_code == 302
    assert SigningKey.objects.filter(state=SigningKey.NEXT).count() == 1


# -- the list ------------------------------------------------------------------------------


def rows(content: str) -> dict[str, str]:
    """Each result row of the list by the full kid in its title."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", content, flags=re.S):
        kid = re.search(r'class="idp-kid" title="([^"]+)"', row)
        if kid:
            found[html.unescape(kid.group(1))] = row
    return found


def test_badges_show_word_symbol_and_state_class(root, settings):
    now = timezone.now()
    old = keys.ensure_current_key(now - timedelta(days=1))
    rotation.rotate_keys(now - timedelta(hours=1), force=True)
    rotation.rotate_keys(now)  # the next key takes over, the old one retires
    assert rotation.rotate_keys(now, force=True).created  # and a new next key waits
    assert rotation.rotate_keys(now, force=True).created is None  # already waiting: nothing new
    states = dict(SigningKey.objects.values_list("kid", "state"))
    assert sorted(states.values()) == ["current", "next", "retired"]
    assert states[old.kid] == "retired"
    content = root.get(CHANGELIST).content.decode()
    by_kid = rows(content)
    assert set(by_kid) == set(states)
    symbols = {"current": "●", "next": "◔", "retired": "○"}
    for kid, state in states.items():
        badge = f'<span class="idp-status idp-key-{state}">{symbols[state]} {state}</span>'
        assert badge in by_kid[kid], (state, by_kid[kid])
    # A revoked key: its badge too.
    rotation.revoke_key(old.kid)
    by_kid = rows(root.get(CHANGELIST).content.decode())
    assert '<span class="idp-status idp-key-revoked">✕ revoked</span>' in by_kid[old.kid]
    assert "revoked: unpublished, its tokens revoked" in by_kid[old.kid]


def test_kid_is_shortened_in_monospace_with_the_whole_in_its_title(root):
    key = keys.ensure_current_key()
    row = rows(root.get(CHANGELIST).content.decode())[key.kid]
    assert f'<code class="idp-kid" title="{key.kid}">{key.kid[:16]}…</code>' in row


def test_age_and_when_the_next_rotation_is_due(root, settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "KEY_ROTATION_PERIOD": 7 * 24 * 3600}
    now = timezone.now()
    key = keys.ensure_current_key(now - timedelta(days=3, minutes=1))
    SigningKey.objects.filter(pk=key.pk).update(activates_at=now - timedelta(days=3, minutes=1))
    plan = rotation.schedule()
    # By rotate_keys' own rule: KEY_ROTATION_PERIOD after it started signing, less one JWKS cache lifetime.
    cache = timedelta(seconds=settings.DELEGATION_IDP.get("JWKS_CACHE_SECONDS", 300))
    assert plan.publish_at == now - timedelta(days=3, minutes=1) + timedelta(days=7) - cache
    content = root.get(CHANGELIST).content.decode()
    row = rows(content)[key.kid]
    assert '<span class="idp-when">3\xa0days</span>' in row  # its age
    assert "next rotation: a new next key is published" in row
    assert '<span class="idp-when">in 3\xa0days, 23\xa0hours</span>' in row
    schedule = re.search(r'<p id="key-schedule"[^>]*>(.*?)</p>', content, flags=re.S).group(1)
    assert "The next rotation is due in 3\xa0days, 23\xa0hours" in html.unescape(schedule)
    assert "Keys rotate every 1\xa0week" in html.unescape(schedule)


def test_a_waiting_next_key_is_when_the_current_one_is_replaced(root):
    current = keys.ensure_current_key()
    root.post(ROTATE)
    upcoming = SigningKey.objects.get(state=SigningKey.NEXT)
    by_kid = rows(root.get(CHANGELIST).content.decode())
    assert "replaced by the waiting next key" in by_kid[current.kid]
    assert "starts signing" in by_kid[upcoming.kid]
    assert rotation.schedule().switch_at == upcoming.activates_at


def test_an_overdue_rotation_says_so(root):
    now = timezone.now()
    keys.ensure_current_key(now - timedelta(days=30))
    content = html.unescape(root.get(CHANGELIST).content.decode())
    assert "it was due" in content and "the next rotation check does it" in content


def test_the_private_key_is_never_shown(root):
    key = keys.ensure_current_key()
    for url in (CHANGELIST, ROTATE, f"{CHANGELIST}{key.pk}/change/"):
        content = root.get(url).content.decode()
        assert '"d"' not in content and "private_key" not in content, url
