"""The project's URLs: each app's own URL conf, the access log, and the admin site."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("casework.urls")),
    path("", include("contacts.urls")),
    path("", include("families.urls")),
    path("families/", include("families.staff_urls")),
    path("audit/", include("casework.audit_urls")),
    path("admin/", admin.site.urls),
]

handler400 = "casework.views.bad_request"
