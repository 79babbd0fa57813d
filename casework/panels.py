"""Sections another app adds to the case page.

casework imports nothing from the apps above it; they register a panel here instead
(families: the family requests about this person). A panel is a function
`(user, case) -> dict | None`: the dict names its template and carries its context, and
the panel decides, through its own app's rules, what this user may see (None: nothing).
"""

_PANELS = []


def register(panel):
    if panel not in _PANELS:
        _PANELS.append(panel)
    return panel


def for_case(user, case) -> list[dict]:
    return [shown for panel in _PANELS if (shown := panel(user, case))]
