"""The admin site class, apart from casework/admin.py: the admin registry imports it
while admin.py is still loading."""

from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminSite

from .models import Role


class PassageAdminSite(OTPAdminSite):
    site_header = _("Passage — staff and teams")
    site_title = _("Passage administration")
    index_title = _("Staff accounts and teams")

    def __init__(self, name="admin"):
        # OTPAdminSite calls itself "otpadmin"; ours is the one admin, at "admin".
        super().__init__(name)

    def has_permission(self, request):
        # The role decides, not is_staff or is_superuser: the superuser flag widens nothing.
        user = request.user
        return user.is_active and user.is_verified() and user.has_role(Role.ADMINISTRATOR)
