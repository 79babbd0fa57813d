"""Request-level safety: who may reach which page, session lifetimes, headers, and what
the lockout table keeps. The rules of staff accounts are in casework/staff.py."""

import logging
import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

logger = logging.getLogger("passage.security")


def public(view):
    """Mark a view as reachable without logging in (public family pages, health)."""
    view.passage_access = "public"
    return view


def password_only(view):
    """Mark a view of the login journey: needs a password login, not yet the second factor."""
    view.passage_access = "password"
    return view


def second_factor_setup(view):
    """Mark the page where people add a passkey: reachable by a verified session even
    when the person's role needs a passkey they do not have yet (casework/passkeys.py)."""
    view.passage_access = "second_factor"
    return view


def client_ip(request) -> str:
    """The client's address, trusting X-Forwarded-For only from our own proxies.

    With PASSAGE_TRUSTED_PROXIES=N, the Nth address from the right of the header is
    the one our outermost proxy saw; anything left of it is the client's own claim.
    """
    trusted = settings.PASSAGE_TRUSTED_PROXIES
    if trusted:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [p for p in forwarded if p]
        if len(forwarded) >= trusted:
            return forwarded[-trusted]
    return request.META.get("REMOTE_ADDR", "")


def csp_nonce(request):
    """Template context: `csp_nonce`, the name django-htmx's script tags look for."""
    return {"csp_nonce": getattr(request, "csp_nonce", "")}


class NoStoreMiddleware:
    """No page of ours may be kept by a browser or proxy cache (static files excepted:
    WhiteNoise answers those before this runs)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["Cache-Control"] = "no-store"
        return response


class SessionLifetimeMiddleware:
    """Idle timeout and absolute lifetime of a staff session.

    Django only knows one cookie age; we keep the login time and the last request time
    in the session and end it (server side too) when either limit has passed.
    """

    # Refresh the last-seen time at most this often, to spare a write per request.
    TOUCH_SECONDS = 30

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            session = request.session
            started = session.setdefault("passage_auth_at", now)
            seen = session.get("passage_seen_at", now)
            if (
                now - seen > settings.SESSION_IDLE_SECONDS
                or now - started > settings.SESSION_ABSOLUTE_SECONDS
            ):
                if request.method == "POST":
                    # Whose it was, so a note being sent is kept (casework/drafts.py).
                    request.passage_expired_user = request.user
                logout(request)
                messages.info(request, _("Your session has ended. Please log in again."))
            elif now - seen >= self.TOUCH_SECONDS or "passage_seen_at" not in session:
                session["passage_seen_at"] = now
        return self.get_response(request)


class StaffOnlyMiddleware:
    """Every page is staff-only and needs the second factor, unless marked otherwise.

    Deny by default: a new view is protected without anyone remembering a decorator.
    Anonymous visitors go to the login page; a password-only session goes to the
    second-factor step (or to enrolment, if the account has no device yet); a session
    verified by a code when the person must use a passkey goes where passkeys.next_step
    says.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        access = getattr(view_func, "passage_access", None)
        if access == "public":
            return None
        user = request.user
        if not user.is_authenticated:
            expired = getattr(request, "passage_expired_user", None)
            if expired is not None and getattr(view_func, "passage_draft", False):
                return _keep_draft(request, expired, view_kwargs)
            return redirect_to(request, "login")
        if access == "password":
            return None
        from .passkeys import next_step

        step = next_step(user)
        if step is None or (step == access == "second_factor"):
            return None
        return redirect_to(request, step)


def _keep_draft(request, user, view_kwargs):
    """A note sent by a session that just ran out: kept for after the next login."""
    from .drafts import keep

    if not keep(request, user, view_kwargs.get("pk")):
        return redirect_to(request, "login")
    messages.info(
        request,
        _("Your note was not added yet, but it is kept: log in again and it is back."),
    )
    case_page = reverse("case_detail", args=[view_kwargs["pk"]])
    return redirect(reverse("login") + "?" + urlencode({"next": case_page}))


def redirect_to(request, name):
    url = reverse(name)
    if request.method == "GET" and request.path not in (reverse("home"), url):
        # The path only: a query string may one day carry search words.
        url += "?" + urlencode({"next": request.path})
    return redirect(url)


class VaultErrorMiddleware:
    """A record that cannot be decrypted gets a clear page, never a traceback or blanks.

    Shredded records read as "shredded" (410); any other failure is an error page
    (500) and a log line with the error class only.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.shortcuts import render

        from . import vault

        if isinstance(exception, vault.Shredded):
            return render(request, "vault/shredded.html", status=410)
        if isinstance(exception, (vault.DecryptionError, vault.KeyringError)):
            logger.error(
                "vault: %s on %s",
                type(exception).__name__,
                request.resolver_match.view_name if request.resolver_match else "?",
            )
            return render(request, "vault/error.html", status=500)
        return None


# --- Lockout records: a keyed hash, never the typed text ----------------------------------------
def lockout_username(request, credentials=None) -> str | None:
    """What django-axes keeps instead of the typed username (AXES_USERNAME_CALLABLE).

    People type passwords into the username box; the lockout table must not keep them.
    Keyed with the secret key, so a copy of the table cannot be tested against guesses;
    case-folded, so "Casey" and "casey" count as one. Axes still locks on this value
    with the address, and on the address alone.
    """
    username = (credentials or {}).get("username")
    if username is None and request is not None:
        username = getattr(request, "POST", {}).get("username")
    if not username:
        return None
    return salted_hmac(
        "passage.lockout-username", str(username).casefold(), algorithm="sha256"
    ).hexdigest()


def lockout_key(user) -> str | None:
    """The lockout table's name for an account, as axes itself computes it."""
    from axes.helpers import get_client_username

    return get_client_username(None, {"username": user.get_username()})
