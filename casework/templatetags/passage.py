from django import template

register = template.Library()


@register.filter
def minutes(delta) -> int:
    """A timedelta as whole minutes, rounded up (for 'wait N minutes')."""
    try:
        return max(1, -(-int(delta.total_seconds()) // 60))
    except AttributeError:
        return 0
