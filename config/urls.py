from django.contrib import admin
from django.urls import include, path

from casework import accounts, case_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", accounts.login_view, name="login"),
    path("accounts/verify/", accounts.verify, name="verify"),
    path("accounts/enrol/", accounts.enrol, name="enrol"),
    path("accounts/backup-codes/", accounts.backup_codes, name="backup_codes"),
    path("accounts/logout/", accounts.logout_view, name="logout"),
    path("i18n/setlang/", views.set_language, name="set_language"),
    path("healthz", views.healthz, name="healthz"),
    path("cases/", case_views.case_list, name="case_list"),
    path("cases/search/", case_views.case_search, name="case_search"),
    path("cases/new/", case_views.case_new, name="case_new"),
    path("cases/break-glass/", case_views.break_glass, name="break_glass"),
    path("cases/<uuid:pk>/", case_views.case_detail, name="case_detail"),
    path("cases/<uuid:pk>/edit/", case_views.case_edit, name="case_edit"),
    path("cases/<uuid:pk>/stage/", case_views.case_stage, name="case_stage"),
    path("cases/<uuid:pk>/close/", case_views.case_close, name="case_close"),
    path("cases/<uuid:pk>/reopen/", case_views.case_reopen, name="case_reopen"),
    path("cases/<uuid:pk>/notes/", case_views.note_add, name="note_add"),
    path(
        "cases/<uuid:pk>/attachments/<uuid:attachment_pk>/",
        case_views.attachment_download,
        name="attachment_download",
    ),
    path("cases/<uuid:pk>/whereabouts/", case_views.whereabouts, name="whereabouts"),
    path("cases/<uuid:pk>/whereabouts/edit/", case_views.whereabouts_edit, name="whereabouts_edit"),
    path("cases/<uuid:pk>/access/", case_views.case_access, name="case_access"),
    path("cases/<uuid:pk>/access/revoke/", case_views.case_revoke, name="case_revoke"),
    path("cases/<uuid:pk>/seal/", case_views.case_seal, name="case_seal"),
    path("audit/", include("casework.audit_urls")),
    path("admin/", admin.site.urls),
]
