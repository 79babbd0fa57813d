"""The family-request panel of the case page, decided by the families rules."""

from .access import requests_for_user


def family_requests_panel(user, case):
    """Requests handed to this case that the viewer may open (none: no panel)."""
    requests = list(requests_for_user(user).filter(case=case).order_by("created_at", "reference"))
    if not requests:
        return None
    return {"template": "families/_case_panel.html", "requests": requests}
