"""The passkey ceremonies, under the names django-otp-webauthn's template tags reverse
(namespace "otp_webauthn"), served by our subclasses (casework/passkeys.py)."""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from . import passkeys
from .security import public

app_name = "otp_webauthn"

urlpatterns = [
    path(
        "registration/begin/",
        passkeys.registration_begin,
        name="credential-registration-begin",
    ),
    path(
        "registration/complete/",
        passkeys.registration_complete,
        name="credential-registration-complete",
    ),
    path(
        "authentication/begin/",
        passkeys.authentication_begin,
        name="credential-authentication-begin",
    ),
    path(
        "authentication/complete/",
        passkeys.authentication_complete,
        name="credential-authentication-complete",
    ),
    # The messages of the library's scripts, in the page's language (locale/*/djangojs.po).
    path(
        "jsi18n/",
        public(JavaScriptCatalog.as_view(packages=["django_otp_webauthn"])),
        name="js-i18n-catalog",
    ),
]
