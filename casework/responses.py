"""Small pieces every page uses: POST-only answers and errors shown as messages."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseNotAllowed


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
