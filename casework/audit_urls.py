"""The auditor's pages, included at /audit/ by config/urls.py."""

from django.urls import path

from . import audit_views

urlpatterns = [
    path("", audit_views.audit_log, name="audit_log"),
    path("unusual/", audit_views.audit_unusual, name="audit_unusual"),
    path("break-glass/<int:seq>/", audit_views.audit_break_glass, name="audit_break_glass"),
    path("export.csv", audit_views.audit_export, name="audit_export"),
    path("checkpoint.txt", audit_views.audit_checkpoint, name="audit_checkpoint"),
]
