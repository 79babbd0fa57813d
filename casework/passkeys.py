"""Passkeys and security keys (WebAuthn) as a second factor, on django-otp-webauthn.

An authenticator app's code can be phished in real time: a look-alike page asks for the
password and the code and replays both at once. A passkey signs a challenge bound to our
own origin, so a look-alike site gets nothing it can replay. Here:

1. Passkeys are a second factor only, never a login without the password
   (OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN is off): the password and its lockout stay.
2. The library's four JSON views are used through subclasses (`passkey_urls.py`) that
   add our rules: a first device needs the same fresh password login (and, after a
   reset, the enrolment link) as an authenticator app; a session another device verified
   may not add a passkey where the organisation requires one; every verification,
   addition, renaming and removal writes its access event (casework/staff.py).
3. PASSAGE_PASSKEY_ROLES names the roles that must use one. `next_step()` is that rule,
   for the middleware and the login pages alike: a session of such a person verified in
   another way reaches only the page to add a passkey (if they have none) or the verify
   step (if they do).
4. The relying party is OTP_WEBAUTHN_RP_ID (the host of PASSAGE_BASE_URL) and the only
   accepted origin is PASSAGE_BASE_URL's; in development, the page's own host and origin.
"""

from contextlib import contextmanager

from cbor2 import CBORError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp import user_has_device
from django_otp_webauthn import exceptions
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import WebAuthnCredential
from django_otp_webauthn.utils import rewrite_exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)
from webauthn.helpers import exceptions as webauthn_errors

from . import staff
from .responses import safe_next
from .security import password_only

MAX_PASSKEYS = 10  # per account; a security key and a phone or two, with room to spare


# --- The rule ------------------------------------------------------------------------------------
def required(user) -> bool:
    """Must this person verify with a passkey (the organisation's PASSAGE_PASSKEY_ROLES)?"""
    wanted = settings.PASSAGE_PASSKEY_ROLES
    return bool(wanted) and any(user.has_role(role) for role in wanted)


def is_passkey(device) -> bool:
    return isinstance(device, WebAuthnCredential)


def kind(device) -> str:
    """What verified a session, for the access log: passkey, authenticator or backup code."""
    from .models import BackupCodeDevice

    if is_passkey(device):
        return "passkey"
    if isinstance(device, BackupCodeDevice):
        return "backup_code"
    return "authenticator"


def passkeys_of(user):
    return WebAuthnCredential.objects.filter(user=user, confirmed=True)


def next_step(user) -> str | None:
    """Where a signed-in session must go before any other page (a URL name), or None.

    1. Not verified: "verify", or "enrol" for an account with no second factor yet.
    2. Verified, but this person must use a passkey and the session was verified in
       another way: "verify" if they have a passkey (the code is not enough), else
       "second_factor", the page where they add one.
    """
    if not user.is_verified():
        return "verify" if user_has_device(user) else "enrol"
    if is_passkey(user.otp_device) or not required(user):
        return None
    return "verify" if passkeys_of(user).exists() else "second_factor"


def codes_accepted(user) -> bool:
    """May this person verify with an app's code or a backup code? Not once they must
    use a passkey and have one."""
    return not (required(user) and passkeys_of(user).exists())


def session_verified(request, device) -> None:
    """This session passed its second step with `device`; the access log says how."""
    from django_otp import login as otp_login

    from . import audit

    otp_login(request, device)
    audit.record(request.user, "auth.verified", obj=request.user, detail={"method": kind(device)})


# --- The library, configured ------------------------------------------------------------------------
# The errors of py_webauthn that the library itself turns into a 422 (its
# rewrite_exceptions); any other failure to read the browser's answer is ours to turn.
REWRITTEN = (
    webauthn_errors.InvalidCBORData,
    webauthn_errors.InvalidRegistrationResponse,
    webauthn_errors.InvalidAuthenticationResponse,
    webauthn_errors.InvalidJSONStructure,
    webauthn_errors.UnsupportedAlgorithm,
    webauthn_errors.UnsupportedPublicKey,
    webauthn_errors.InvalidPublicKeyStructure,
    webauthn_errors.InvalidAuthenticatorDataStructure,
    webauthn_errors.InvalidCertificateChain,
    webauthn_errors.UnsupportedEC2Curve,
    webauthn_errors.InvalidBackupFlags,
)
UNREADABLE = (
    ValueError,  # binascii.Error (bad base64) included
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    CBORError,
    webauthn_errors.WebAuthnException,
)


@contextmanager
def browser_answer():
    """Whatever the browser sent may be anything (a hostile client): an answer that cannot
    be read is a 422 with a message, never a 500 (py_webauthn decodes base64 and CBOR
    before it validates, and lets those errors through)."""
    try:
        yield
    except REWRITTEN:
        raise
    except UNREADABLE as exc:
        _logger().info("passkeys: unreadable answer (%s)", type(exc).__name__)
        raise exceptions.UnprocessableEntity(
            code="unreadable_answer", detail=_("The passkey's answer could not be read.")
        ) from None


class PasskeyHelper(WebAuthnHelper):
    """The relying party and origins of our settings; keys named by username only; an
    unreadable answer is the client's error (browser_answer)."""

    def register_complete(self, user, state, data):
        with browser_answer():
            return super().register_complete(user=user, state=state, data=data)

    def authenticate_complete(self, user, state, data):
        with browser_answer():
            return super().authenticate_complete(user=user, state=state, data=data)

    def get_relying_party_domain(self) -> str:
        if settings.DEBUG or settings.TESTING:
            return self.request.get_host().rsplit(":", 1)[0].strip("[]")
        return super().get_relying_party_domain()

    def get_allowed_origins(self) -> list[str]:
        origins = list(super().get_allowed_origins())
        if settings.DEBUG or settings.TESTING:
            origins.append(f"{self.request.scheme}://{self.request.get_host()}")
        return origins

    def get_credential_display_name(self, user) -> str:
        # A security key shows this to whoever holds it: the username, no full name.
        return user.get_username()

    def create_credential(self, user, response, parsed_credential, original_data):
        device = super().create_credential(user, response, parsed_credential, original_data)
        device.name = default_name()
        return device


def default_name() -> str:
    return _("Passkey added %(date)s") % {
        "date": formats.date_format(timezone.localdate(), "SHORT_DATE_FORMAT")
    }


class PasskeyRefused(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_code = "passkey_refused"


class _JsonBody:
    """The ceremony's JSON must be an object: a list or a number is a 400, not a 500."""

    def initial(self, request, *args, **kwargs):
        if not hasattr(request.data, "get"):
            raise exceptions.MalformedRequest()
        super().initial(request, *args, **kwargs)


class _Registration(_JsonBody):
    def check_can_register(self):
        user, session = self.request.user, self.request.session
        if not user_has_device(user):
            refusal = staff.enrolment_refusal(user, session)
            if refusal:
                raise PasskeyRefused(detail=refusal)
        elif next_step(user) not in (None, "second_factor"):
            # The code of an app verified this session and the person must use a passkey
            # they have: the code alone may not add another one.
            raise PasskeyRefused(detail=_("Verify with your passkey first."))
        if passkeys_of(user).count() >= MAX_PASSKEYS:
            raise PasskeyRefused(
                detail=_("You have %(n)s passkeys. Remove one you no longer use first.")
                % {"n": MAX_PASSKEYS}
            )


class RegistrationBegin(_Registration, BeginCredentialRegistrationView):
    pass


class RegistrationComplete(_Registration, CompleteCredentialRegistrationView):
    """Verify the new key, then record it through the staff service in one transaction
    (a first device uses up the enrolment link; if that fails, no key is kept)."""

    def post(self, *args, **kwargs):
        request = self.request
        user, state, helper = self.get_user(), self.get_state(), self.get_helper()
        verified_by = kind(user.otp_device) if user.is_verified() else None
        try:
            with transaction.atomic():
                with rewrite_exceptions(logger=_logger()):
                    device = helper.register_complete(user=user, state=state, data=request.data)
                staff.passkey_added(
                    user=user,
                    device=device,
                    link_id=request.session.get(staff.ENROLMENT_LINK_KEY),
                    verified_by=verified_by,
                )
        except staff.EnrolmentRefused:
            raise PasskeyRefused(detail=_("This enrolment link was used or has expired.")) from None
        except IntegrityError:
            # The same key sent again (browsers exclude known keys; a client may not).
            raise PasskeyRefused(detail=_("This passkey is already registered.")) from None
        request.session.pop(staff.ENROLMENT_LINK_KEY, None)
        if verified_by is None or next_step(user) is not None:
            # Registering the key proved the person holds it: the session is now
            # verified by it (a first device, or the passkey a role requires).
            session_verified(request, device)
        return self.json_ok(device)

    @staticmethod
    def json_ok(device):
        from django.http import JsonResponse

        return JsonResponse({"id": device.pk})


class AuthenticationBegin(_JsonBody, BeginCredentialAuthenticationView):
    pass


class AuthenticationComplete(_JsonBody, CompleteCredentialAuthenticationView):
    """The second step with a passkey: the signed-in person's own key, then on to `next`."""

    def complete_auth(self, device):
        session_verified(self.request, device)

    def get_success_url(self):
        return safe_next(self.request, "home")


def _logger():
    import logging

    return logging.getLogger(settings.OTP_WEBAUTHN_EXCEPTION_LOGGER_NAME)


# Every ceremony belongs to the login journey: reachable after the password, before the
# second factor (the views check the rest themselves).
registration_begin = password_only(RegistrationBegin.as_view())
registration_complete = password_only(RegistrationComplete.as_view())
authentication_begin = password_only(AuthenticationBegin.as_view())
authentication_complete = password_only(AuthenticationComplete.as_view())

POLICY_NOTE = gettext_lazy(
    "Your role needs a passkey or security key as its second factor: the code of an app "
    "can be stolen by a look-alike page, a passkey cannot."
)
