from django.urls import path

from . import staff_views

urlpatterns = [
    path("triage/", staff_views.triage, name="family_triage"),
    path("requests/<uuid:request_pk>/", staff_views.request_detail, name="family_request"),
    path("requests/<uuid:request_pk>/close/", staff_views.close, name="family_close"),
    path("requests/<uuid:request_pk>/hand/", staff_views.hand_over, name="family_hand"),
    path("requests/<uuid:request_pk>/answer/", staff_views.answer, name="family_answer"),
    path(
        "disclosures/<uuid:disclosure_pk>/approve/",
        staff_views.disclosure_approve,
        name="family_disclosure_approve",
    ),
    path(
        "disclosures/<uuid:disclosure_pk>/release/",
        staff_views.disclosure_release,
        name="family_disclosure_release",
    ),
]
