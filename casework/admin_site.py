"""The admin site class, apart from casework/admin.py: the admin registry imports it
while admin.py is still loading."""

import functools
import unicodedata
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.core.exceptions import BadRequest, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp.admin import OTPAdminSite

from .models import Role

# Longer than any searchable value (an e-mail address is at most 254 characters).
SEARCH_LIMIT = 254


class PassageAdminSite(OTPAdminSite):
    site_header = gettext_lazy("Passage — staff and teams")
    site_title = gettext_lazy("Passage administration")
    index_title = gettext_lazy("Staff accounts and teams")

    def __init__(self, name="admin"):
        # OTPAdminSite calls itself "otpadmin"; ours is the one admin, at "admin".
        super().__init__(name)

    def has_permission(self, request):
        # The role decides, not is_staff or is_superuser: the superuser flag widens nothing.
        user = request.user
        return user.is_active and user.is_verified() and user.has_role(Role.ADMINISTRATOR)

    def get_urls(self):
        from . import accounts

        # The two links only an account holder can use. They live here, beside the
        # actions that send them; they are no admin pages (anyone with the link, and
        # only with it). casework/urls.py would be their better home (accounts/...).
        return [
            path(
                "account/password/<uidb64>/<token>/",
                accounts.password_set_view,
                name="account_password_set",
            ),
            path(
                "account/enrol/<uuid:link_id>/<str:token>/",
                accounts.enrolment_link,
                name="account_enrolment_link",
            ),
            *super().get_urls(),
        ]

    def admin_view(self, view, cacheable=False):
        return super().admin_view(_refuse_hostile_input(view), cacheable)

    def login(self, request, extra_context=None):
        """One login for all staff (password, then second factor, with lockout): the
        admin's own login form would be a second way in."""
        url = reverse("login")
        nxt = request.GET.get("next")
        if nxt and url_has_allowed_host_and_scheme(nxt, {request.get_host()}, request.is_secure()):
            url += "?" + urlencode({"next": nxt})
        return redirect(url)

    def password_change(self, request, extra_context=None):
        """The admin's change of one's own password, through the service that ends the
        other sessions and writes the event."""
        from django.contrib.admin.forms import AdminPasswordChangeForm

        from .accounts import _OwnPasswordChangeView

        request.current_app = self.name
        return _OwnPasswordChangeView.as_view(
            form_class=AdminPasswordChangeForm,
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )(request)


def _refuse_hostile_input(view):
    """Every admin page answers hostile input with a clear page, never a 500.

    1. Search text: NUL and other control characters are dropped (PostgreSQL refuses
       NUL); text longer than any searchable value is not searched, with a message
       (SQLite refuses very long LIKE patterns).
    2. A selection for an action must be ids of the model (a bogus `_selected_action`
       fails the query only once the action runs).
    3. Whatever still fails validation deep in a view: a message and the page again
       (POST), or the 400 page (GET).
    """
    model_admin = getattr(view, "__self__", None)
    pk_field = model_admin.model._meta.pk if isinstance(model_admin, ModelAdmin) else None

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if "q" in request.GET:
            _clean_search(request)
        if request.method == "POST" and pk_field is not None:
            if not _valid_ids(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME), pk_field):
                messages.warning(request, _("The selection was not valid; nothing was changed."))
                return HttpResponseRedirect(request.get_full_path())
        try:
            return view(request, *args, **kwargs)
        except ValidationError:
            if request.method != "POST":
                raise BadRequest from None
            messages.warning(request, _("The request was not valid; nothing was changed."))
            return HttpResponseRedirect(request.get_full_path())

    return guarded


def _clean_search(request):
    text = request.GET.get("q", "")
    cleaned = "".join(
        ch for ch in text if ch in "\t\n " or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    if len(cleaned) > SEARCH_LIMIT:
        messages.warning(
            request,
            _("The search text is too long (at most %(n)s characters); nothing was searched.")
            % {"n": SEARCH_LIMIT},
        )
        cleaned = ""
    if cleaned != text:
        query = request.GET.copy()
        query["q"] = cleaned
        request.GET = query


def _valid_ids(values, pk_field) -> bool:
    for value in values:
        if len(value) > 64:
            return False
        try:
            pk_field.to_python(value)
        except ValidationError:
            return False
    return True
