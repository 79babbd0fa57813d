from django.contrib import admin
from django.urls import path

from casework import accounts, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", accounts.login_view, name="login"),
    path("accounts/verify/", accounts.verify, name="verify"),
    path("accounts/enrol/", accounts.enrol, name="enrol"),
    path("accounts/backup-codes/", accounts.backup_codes, name="backup_codes"),
    path("accounts/logout/", accounts.logout_view, name="logout"),
    path("i18n/setlang/", views.set_language, name="set_language"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
