"""casework's pages: accounts, cases and task queues."""

from django.urls import path

from . import accounts, case_views, queue_views, views

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
    path("cases/<uuid:pk>/tasks/new/", queue_views.case_task_new, name="case_task_new"),
    path(
        "cases/<uuid:pk>/tasks/checklist/",
        queue_views.case_task_template,
        name="case_task_template",
    ),
    path("tasks/", queue_views.my_queue, name="my_queue"),
    path("tasks/team/", queue_views.team_queue, name="team_queue"),
    path("tasks/board/", queue_views.board, name="board"),
    path("tasks/board/assign/", queue_views.board_assign, name="board_assign"),
    path("tasks/checklists/", queue_views.task_templates, name="task_templates"),
    path("tasks/checklists/new/", queue_views.task_template_edit, name="task_template_new"),
    path(
        "tasks/checklists/<int:template_pk>/",
        queue_views.task_template_edit,
        name="task_template_edit",
    ),
    path("tasks/<uuid:task_pk>/", queue_views.task_detail, name="task_detail"),
    path("tasks/<uuid:task_pk>/claim/", queue_views.task_claim, name="task_claim"),
    path("tasks/<uuid:task_pk>/status/", queue_views.task_status, name="task_status"),
    path("tasks/<uuid:task_pk>/comment/", queue_views.task_comment, name="task_comment"),
    path("tasks/<uuid:task_pk>/assign/", queue_views.task_assign, name="task_assign"),
]
