"""Staff login: password, then a second factor (TOTP, or a single-use backup code)."""

import base64
from urllib.parse import urlencode

import segno
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from .forms import EnrolForm, LoginForm, TokenForm
from .models import BackupCodeDevice
from .security import password_only, public


def _next_url(request, default="home"):
    url = request.POST.get("next") or request.GET.get("next")
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        return url
    return reverse(default)


class _LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = False

    def form_valid(self, form):
        # auth.login() gives the session a new key (no fixation).
        response = super().form_valid(form)
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
    if request.user.is_verified():
        return redirect(_next_url(request))
    if not user_has_device(request.user):
        return redirect("enrol")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["otp_token"])
        if device is not None:
            otp_login(request, device)
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
    return render(request, "registration/verify.html", {"form": form})


@sensitive_post_parameters("otp_token")
@password_only
@login_required
@never_cache
def enrol(request):
    """First login: pair an authenticator app (QR code), then hand out backup codes."""
    if user_has_device(request.user):
        return redirect("verify")
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(
            user=request.user, name=_("Authenticator app"), confirmed=False
        )
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["otp_token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return _show_new_backup_codes(request)
        form.add_error("otp_token", _("That code did not match. Scan the code again and retry."))
    secret = _base32(device.bin_key)
    context = {
        "form": form,
        "qr_svg": segno.make(device.config_url, error="m").svg_inline(
            scale=4, title=_("QR code for your authenticator app")
        ),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }
    return render(request, "registration/enrol.html", context)


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
