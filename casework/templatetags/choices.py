from django import template
from django.utils.translation import get_language

register = template.Library()

# {(model, field name, language): {value: label}}: made once per process and language.
_LABELS: dict = {}


def choice_labels(model, name: str) -> dict:
    """The labels of a choice field as plain strings in the active language."""
    key = (model, name, get_language())
    labels = _LABELS.get(key)
    if labels is None:
        field = model._meta.get_field(name)
        labels = _LABELS[key] = {value: str(text) for value, text in field.flatchoices}
    return labels


@register.filter
def label(obj, name: str) -> str:
    """`{{ task|label:"aim" }}`: what `task.get_aim_display` shows, without its cost.

    get_FOO_display builds a dict of lazy translations and hashes each of them on every
    call: on a board of a thousand tasks that was a quarter of the page. Here each
    label is made once per field and language, and a row costs a dictionary lookup.
    """
    value = getattr(obj, name)
    return choice_labels(type(obj), name).get(value, value)
