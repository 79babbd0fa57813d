from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.db.models import Count, Exists, OuterRef, Q
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.i18n import set_language as django_set_language

from . import access, health
from .models import Role, Team, User
from .security import public


@login_required
def home(request):
    user = request.user
    teams = (
        access.teams_of(user)
        .annotate(
            n_members=Count("members", distinct=True),
            n_coordinators=Count("coordinators", distinct=True),
        )
        .prefetch_related("coordinators")
    )
    context = {"teams": teams}
    if user.has_role(Role.ADMINISTRATOR) or user.has_role(Role.AUDITOR):
        context["staff"] = staff_overview()
    return render(request, "casework/home.html", context)


def staff_overview() -> dict:
    """Counts an administrator or auditor can act on; no case content."""
    from axes.models import AccessAttempt
    from django_otp_webauthn.models import WebAuthnCredential

    from .models import VaultTOTPDevice

    active = User.objects.filter(is_active=True)
    per_role = dict(
        Group.objects.filter(name__in=Role.values)
        .annotate(n=Count("user", filter=Q(user__is_active=True)))
        .values_list("name", "n")
    )
    has_app = VaultTOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    has_passkey = WebAuthnCredential.objects.filter(user=OuterRef("pk"), confirmed=True)
    must_use_passkey = active.filter(groups__name__in=settings.PASSAGE_PASSKEY_ROLES)
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    return {
        "roles": [(label, per_role.get(value, 0)) for value, label in Role.choices],
        "active_users": active.count(),
        "without_second_factor": active.filter(~Exists(has_app) & ~Exists(has_passkey)).count(),
        "passkey_roles": [
            label for value, label in Role.choices if value in settings.PASSAGE_PASSKEY_ROLES
        ],
        "without_required_passkey": must_use_passkey.filter(~Exists(has_passkey))
        .distinct()
        .count(),
        "teams": Team.objects.count(),
        "locked_out": AccessAttempt.objects.filter(
            attempt_time__gte=since, failures_since_start__gte=settings.AXES_FAILURE_LIMIT
        ).count(),
        "failed_logins_24h": AccessAttempt.objects.filter(
            attempt_time__gte=timezone.now() - timezone.timedelta(hours=24)
        ).count(),
    }


@public
@require_GET
def healthz(request):
    """ok or fail, nothing more: callers are anonymous. Each check is bounded in time,
    so a hung dependency gives "fail" in about a second (casework/health.py;
    `manage.py health` gives the details)."""
    ok = all(health.check_all().values())
    return HttpResponse(
        "ok" if ok else "fail", status=200 if ok else 503, content_type="text/plain"
    )


@public
def set_language(request):
    """Django's language switcher, open to everyone (the public form has one too)."""
    return django_set_language(request)


def bad_request(request, exception=None):
    """400, or the "too long" page when the body was over the size limits."""
    from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent

    if isinstance(exception, (RequestDataTooBig, TooManyFieldsSent)):
        return render(request, "413.html", status=413)
    return render(request, "400.html", status=400)
