"""Staff login: password, then a second factor (a passkey, an authenticator app's code or
a single-use backup code; casework/passkeys.py says which a person must use); the page
where people manage their own second factors; and the two links only an account holder
can use: set a new password, and enrol a new second factor after a reset
(casework/staff.py has the rules)."""

import base64
import time
from urllib.parse import urlencode

import segno
from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.validators import MaxLengthValidator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import match_token, user_has_device

from . import passkeys, staff
from .forms import EnrolForm, LoginForm, PasskeyNameForm, TokenForm
from .models import BackupCodeDevice, VaultTOTPDevice
from .responses import post_only, report_errors, safe_next
from .security import password_only, public, second_factor_setup


def _next_url(request, default="home"):
    return safe_next(request, default)


class StaffLoginForm(LoginForm):
    """The username's length is checked before anything looks it up: a long one is a
    form error, not a failed login (nor a too-long value for the lockout table)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))


class _LoginView(auth_views.LoginView):
    form_class = StaffLoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = False

    def form_valid(self, form):
        # auth.login() gives the session a new key (no fixation).
        response = super().form_valid(form)
        # Enrolment asks for a password login made in this session (and after any reset).
        self.request.session[staff.PASSWORD_AT_KEY] = time.time()
        user = form.get_user()
        url = reverse("verify" if user_has_device(user) else "enrol")
        nxt = self.get_redirect_url()
        if nxt:
            url += "?" + urlencode({"next": nxt})
        response["Location"] = url
        return response


login_view = public(sensitive_post_parameters("password")(_LoginView.as_view()))


@sensitive_post_parameters("otp_token")
@password_only
@login_required
@never_cache
def verify(request):
    """The second step: a passkey, or (unless the person must use their passkey) an app's
    code or a backup code."""
    step = passkeys.next_step(request.user)
    if step != "verify":
        return redirect(_next_url(request) if step is None else step)
    codes = passkeys.codes_accepted(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and not codes:
        form.is_valid()
        form.add_error(None, passkeys.POLICY_NOTE)
    elif request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["otp_token"])
        if device is not None:
            passkeys.session_verified(request, device)
            if isinstance(device, BackupCodeDevice):
                messages.warning(
                    request,
                    _("You used a backup code. %(n)s remain; make new ones when you run low.")
                    % {"n": device.remaining()},
                )
            return redirect(_next_url(request))
        form.add_error(
            "otp_token",
            _("That code was not accepted. Check the time on your phone and try the newest code."),
        )
    context = {
        "form": form,
        "codes_accepted": codes,
        "has_passkey": passkeys.passkeys_of(request.user).exists(),
        "policy_note": None if codes else passkeys.POLICY_NOTE,
    }
    return render(request, "registration/verify.html", context)


@sensitive_post_parameters("otp_token")
@password_only
@login_required
@never_cache
def enrol(request):
    """A first second factor, always after a fresh password login (and after a reset,
    with an enrolment link): a passkey (the page's button, casework/passkeys.py), or an
    authenticator app paired by QR code unless the person's role needs a passkey; then
    backup codes."""
    if user_has_device(request.user):
        return redirect("verify")
    refusal = staff.enrolment_refusal(request.user, request.session)
    if refusal:
        return _enrol_refused(request, refusal)
    app_allowed = not passkeys.required(request.user)
    context = {
        "app_allowed": app_allowed,
        "policy_note": None if app_allowed else passkeys.POLICY_NOTE,
    }
    if app_allowed:
        device = VaultTOTPDevice.objects.filter(user=request.user, confirmed=False).first()
        if device is None:
            device = VaultTOTPDevice.objects.create(
                user=request.user, name=_("Authenticator app"), confirmed=False
            )
        form = EnrolForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if device.verify_token(form.cleaned_data["otp_token"]):
                try:
                    staff.second_factor_enrolled(
                        user=request.user,
                        device=device,
                        link_id=request.session.get(staff.ENROLMENT_LINK_KEY),
                    )
                except staff.EnrolmentRefused:
                    return _enrol_refused(
                        request, _("This enrolment link was used or has expired.")
                    )
                request.session.pop(staff.ENROLMENT_LINK_KEY, None)
                passkeys.session_verified(request, device)
                return _show_new_backup_codes(request)
            form.add_error(
                "otp_token", _("That code did not match. Scan the code again and retry.")
            )
        secret = _base32(device.bin_key)
        context |= {
            "form": form,
            "qr_svg": segno.make(device.config_url, error="m").svg_inline(
                scale=4, title=_("QR code for your authenticator app")
            ),
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        }
    elif request.method == "POST":
        return _enrol_refused(request, passkeys.POLICY_NOTE)
    return render(request, "registration/enrol.html", context)


def _enrol_refused(request, reason):
    return render(request, "registration/enrol_refused.html", {"reason": reason}, status=403)


@public
@never_cache
def enrolment_link(request, link_id, token):
    """An enrolment link from an e-mail: remember it in this browser and ask for a fresh
    password login (whoever was logged in here is logged out first)."""
    link = staff.enrolment_link_valid(link_id, token)
    if link is None:
        return render(request, "registration/link_invalid.html", status=410)
    if request.user.is_authenticated:
        logout(request)
    request.session[staff.ENROLMENT_LINK_KEY] = str(link.pk)
    messages.info(request, _("Log in with your password to set up your new second factor."))
    return redirect("login")


class _PasswordSetView(auth_views.PasswordResetConfirmView):
    """Django's reset-confirm page (the token leaves the URL at once, the link works
    once and expires with PASSWORD_RESET_TIMEOUT); the password is set by the service."""

    template_name = "registration/password_set.html"

    def form_valid(self, form):
        staff.password_set(
            actor=form.user, user=form.user, password=form.cleaned_data["new_password1"]
        )
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        messages.success(self.request, _("Your new password is set. Log in with it."))
        return redirect("login")


password_set_view = public(_PasswordSetView.as_view())


class _OwnPasswordChangeView(auth_views.PasswordChangeView):
    """Changing one's own password (the admin's page): every other session ends."""

    def form_valid(self, form):
        staff.password_set(
            actor=self.request.user,
            user=form.user,
            password=form.cleaned_data["new_password1"],
            keep_session=self.request.session.session_key,
        )
        update_session_auth_hash(self.request, form.user)
        return redirect(self.get_success_url())


@second_factor_setup
@login_required
@never_cache
def second_factor(request):
    """One's own second factors: passkeys (add, rename, remove), the authenticator app
    (remove, once there is a passkey), backup codes. A person whose role needs a passkey
    and who has none is held here until they add one."""
    user = request.user
    keys = list(passkeys.passkeys_of(user).order_by("created_at", "pk"))
    app = VaultTOTPDevice.objects.filter(user=user, confirmed=True).first()
    codes = BackupCodeDevice.objects.filter(user=user).first()
    context = {
        "keys": [
            (key, PasskeyNameForm(initial={"name": key.name}, prefix=f"k{key.pk}")) for key in keys
        ],
        "app": app,
        "backup_codes_left": codes.remaining() if codes else None,
        "required": passkeys.required(user),
        "must_add": passkeys.next_step(user) == "second_factor",
        "max_passkeys": passkeys.MAX_PASSKEYS,
    }
    return render(request, "registration/second_factor.html", context)


def _own_passkey(request, device_pk):
    device = passkeys.passkeys_of(request.user).filter(pk=device_pk).first()
    if device is None:
        raise Http404
    return device


@login_required
@never_cache
def passkey_rename(request, device_pk):
    device = _own_passkey(request, device_pk)
    if not_post := post_only(request):
        return not_post
    form = PasskeyNameForm(request.POST, prefix=f"k{device.pk}")
    if form.is_valid():
        staff.passkey_renamed(user=request.user, device=device, name=form.cleaned_data["name"])
        messages.success(request, _("The passkey was renamed."))
    else:
        report_errors(request, form)
    return redirect("second_factor")


@login_required
@never_cache
def passkey_remove(request, device_pk):
    return _remove(request, _own_passkey(request, device_pk), _("The passkey was removed."))


@login_required
@never_cache
def authenticator_remove(request):
    device = VaultTOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    if device is None:
        raise Http404
    return _remove(request, device, _("The authenticator app was removed."))


def _remove(request, device, done):
    if not_post := post_only(request):
        return not_post
    try:
        staff.second_factor_removed(user=request.user, device=device)
    except staff.AccountActionRefused as refusal:
        report_errors(request, refusal)
    else:
        messages.success(request, done)
    return redirect("second_factor")


@require_POST
@login_required
@never_cache
def backup_codes(request):
    """New backup codes, shown once; the old ones stop working."""
    return _show_new_backup_codes(request)


def _show_new_backup_codes(request):
    device, _created = BackupCodeDevice.objects.get_or_create(
        user=request.user, defaults={"name": _("Backup codes")}
    )
    codes = device.generate_codes()
    return render(request, "registration/backup_codes.html", {"codes": codes})


# POST only (Django's LogoutView); flushing the session deletes its row on the server.
logout_view = password_only(auth_views.LogoutView.as_view())


def _base32(key: bytes) -> str:
    return base64.b32encode(key).decode().rstrip("=")
