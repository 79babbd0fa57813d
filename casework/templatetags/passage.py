from django import template

register = template.Library()


@register.simple_tag
def once_token() -> str:
    """A fresh one-time form token, for a form drawn by hand (casework/versions.py)."""
    from casework.versions import new_token

    return new_token()


@register.filter
def minutes(delta) -> int:
    """A timedelta as whole minutes, rounded up (for 'wait N minutes')."""
    try:
        return max(1, -(-int(delta.total_seconds()) // 60))
    except AttributeError:
        return 0
