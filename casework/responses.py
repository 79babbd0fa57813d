"""Small pieces every page uses: POST-only answers, errors shown as messages, and the one
way a `next` parameter is followed."""

import unicodedata
from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme

NEXT_LIMIT = 2000  # longer than any page of ours with its query string


def post_only(request):
    """405 for anything but POST. Call it after the access check, so that outsiders
    get the same 404 on every method."""
    return None if request.method == "POST" else HttpResponseNotAllowed(["POST"])


def report_errors(request, source) -> None:
    """Show what went wrong, in the user's language: a form's errors, a validation
    error's messages, or a refusal (e.g. a missing consent) as its text."""
    if isinstance(source, forms.BaseForm):
        errors = [error for field_errors in source.errors.values() for error in field_errors]
    elif isinstance(source, ValidationError):
        errors = source.messages
    elif isinstance(source, Exception):
        errors = [str(source)]
    else:
        errors = list(source)
    for error in errors:
        messages.error(request, error)


def is_safe_next(url: str) -> bool:
    """A path of one of this site's pages, and nothing else.

    1. Relative to this site: starts with one "/", never "//" or "/\\" (both mean
       another host to a browser), no scheme, no host (Django's
       url_has_allowed_host_and_scheme, as a second opinion).
    2. No control, format (bidi overrides, ZWJ/ZWNJ) or space characters, no NUL; at
       most NEXT_LIMIT characters.
    3. Its path resolves to one of our views: an unknown URL is never echoed back.
    """
    if not isinstance(url, str) or not 0 < len(url) <= NEXT_LIMIT:
        return False
    if not url.startswith("/") or url.startswith(("//", "/\\")):
        return False
    if any(unicodedata.category(ch)[0] in "CZ" for ch in url):
        return False
    if not url_has_allowed_host_and_scheme(url, allowed_hosts=None):
        return False
    try:
        resolve(urlsplit(url).path)
    except Resolver404:
        return False
    return True


def safe_next(request, default: str = "home", *, field: str = "next") -> str:
    """Where to go next: the request's `next` (POST, then the query string) if it is
    one of this site's pages (is_safe_next), else `default` (a URL name or a path)."""
    for source in (request.POST, request.GET):
        url = source.get(field)
        if url:
            return url if is_safe_next(url) else resolve_url(default)
    return resolve_url(default)


def redirect_back(request, default: str = "home", *, field: str = "next"):
    """A redirect to safe_next(). Never Django's redirect() on a value from the request:
    it takes a bare word for a URL name (NoReverseMatch, a 500)."""
    return HttpResponseRedirect(safe_next(request, default, field=field))
