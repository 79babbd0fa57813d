from django.urls import path

from . import views

urlpatterns = [
    path("cases/<uuid:pk>/contacts/", views.contacts, name="case_contacts"),
    path("cases/<uuid:pk>/contacts/<uuid:contact_pk>/", views.contact_edit, name="contact_edit"),
    path("cases/<uuid:pk>/contacts/<uuid:contact_pk>/messages/", views.thread, name="thread"),
    path("cases/<uuid:pk>/consent/", views.consent_page, name="consent"),
    path("cases/<uuid:pk>/consent/record/", views.consent_record, name="consent_record"),
    path(
        "cases/<uuid:pk>/consent/<uuid:event_pk>/withdraw/",
        views.consent_withdraw,
        name="consent_withdraw",
    ),
    path("cases/<uuid:pk>/consent/<uuid:event_pk>/scan/", views.consent_scan, name="consent_scan"),
    path("cases/<uuid:pk>/do-not-disclose/", views.do_not_disclose, name="do_not_disclose"),
    path(
        "cases/<uuid:pk>/do-not-disclose/<uuid:entry_pk>/remove/",
        views.do_not_disclose_remove,
        name="do_not_disclose_remove",
    ),
    path("cases/<uuid:pk>/messages/<uuid:message_pk>/review/", views.review, name="review"),
    path("cases/<uuid:pk>/messages/<uuid:message_pk>/deliver/", views.deliver, name="deliver"),
    path("messages/review/", views.review_queue, name="review_queue"),
]
