"""The public side: the consent form and the status page. No login; one answer for all."""

import time

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from casework.security import public
from contacts.models import NoticeText

from . import limits, ratelimit, services
from .forms import ContactRequestForm, FollowUpForm, StatusForm, looks_automated, started_token
from .models import FamilyRequest, new_reference, new_secret

SESSION_KEY = "passage_family_request"
SESSION_SECONDS = 30 * 60


def _notice():
    return NoticeText.current("family_request", (get_language() or "en")[:2])


@public
@sensitive_post_parameters()
@sensitive_variables("secret", "form")
@require_http_methods(["GET", "POST"])
def contact_form(request):
    """The same answer (status, template, headers, size) for every accepted submission,
    whoever it names: screening and matching run later, in the background."""
    notice = _notice()
    if request.method == "POST":
        form = ContactRequestForm(request.POST)
        if form.is_valid():
            if looks_automated(request.POST) or not ratelimit.hit(
                request, "contact", settings.PASSAGE_CONTACT_RATE_PER_HOUR
            ):
                reference, secret = new_reference(), new_secret()  # dropped, answered alike
            else:
                saved, secret = services.request_submit(
                    data=form.request_data(),
                    language=(get_language() or "en")[:2],
                    notice_sha256=notice.sha256 if notice else "",
                )
                reference = saved.reference
            return render(
                request, "families/thanks.html", {"reference": reference, "secret": secret}
            )
    else:
        form = ContactRequestForm(initial={"started": started_token()})
    return render(request, "families/contact_form.html", {"form": form, "notice": notice})


def _current(request) -> FamilyRequest | None:
    held = request.session.get(SESSION_KEY)
    if not held or time.time() - held.get("at", 0) > SESSION_SECONDS:
        request.session.pop(SESSION_KEY, None)
        return None
    # The case comes in the same query (as ciphertext, never decrypted here), matched
    # or not, so no page of a matched request runs a query more.
    found = (
        FamilyRequest.objects.select_related("data_key", "case__data_key")
        .filter(pk=held["id"])
        .first()
    )
    if found is None or found.is_shredded:
        request.session.pop(SESSION_KEY, None)
        return None
    held["at"] = time.time()
    request.session[SESSION_KEY] = held
    return found


@public
@sensitive_post_parameters("secret")
@sensitive_variables("secret")
@require_http_methods(["GET", "POST"])
def status(request):
    """Reference and secret in, one of four states out. A wrong secret and an unknown
    reference get the same page."""
    if request.method == "POST":
        form = StatusForm(request.POST)
        if form.is_valid():
            if not ratelimit.hit(request, "status", settings.PASSAGE_STATUS_RATE_PER_HOUR):
                form.add_error(
                    None, _("Too many tries from your connection. Wait an hour and try again.")
                )
            else:
                found = services.find_for_family(
                    form.cleaned_data["reference"], form.cleaned_data["secret"]
                )
                if found is not None:
                    request.session.cycle_key()
                    request.session[SESSION_KEY] = {"id": str(found.pk), "at": time.time()}
                    return redirect("family_status")
                form.add_error(
                    None,
                    _(
                        "We could not find a request with this reference and secret. Check both and try again."
                    ),
                )
        return render(request, "families/status_form.html", {"form": form})
    found = _current(request)
    if found is None:
        return render(request, "families/status_form.html", {"form": StatusForm()})
    state, replies, shared = services.shown_to_family(found)
    return render(
        request,
        "families/status.html",
        {
            "req": found,
            "state": state,
            "replies": replies,
            "shared": shared,
            "follow_up": FollowUpForm(),
        },
    )


def _follow_up_allowed(request, found) -> bool:
    """Within the limits per client (any request) and per request (any client). Over
    either, the message is dropped with the normal answer."""
    return ratelimit.hit(request, "follow_up", limits.follow_up_rate_per_hour()) and (
        ratelimit.hit_key(
            f"follow_up_request:{found.pk}",
            limits.follow_ups_per_request_per_day(),
            window=24 * 3600,
        )
    )


@public
@sensitive_post_parameters("body")
@require_POST
def follow_up(request):
    found = _current(request)
    if found is None:
        return redirect("family_status")
    form = FollowUpForm(request.POST)
    if form.is_valid() and found.family_state() != "closed":
        if _follow_up_allowed(request, found):
            services.family_follow_up(family_request=found, body=form.cleaned_data["body"])
        messages.success(request, _("Your message was received. We pass it on only if they agree."))
    else:
        messages.error(request, _("Write your message (at most 5,000 characters)."))
    return redirect("family_status")


@public
@require_POST
def withdraw(request):
    found = _current(request)
    if found is None:
        return redirect("family_status")
    if request.POST.get("confirm") != "yes":
        messages.error(
            request, _("Tick the box to confirm that you want to withdraw and delete your request.")
        )
        return redirect("family_status")
    services.family_withdraw(family_request=found)
    request.session.pop(SESSION_KEY, None)
    return render(request, "families/withdrawn.html")


@public
@require_POST
def leave(request):
    request.session.pop(SESSION_KEY, None)
    return redirect("family_status")
