from django.urls import path

from . import views

urlpatterns = [
    path("contact/", views.contact_form, name="family_contact"),
    path("contact/status/", views.status, name="family_status"),
    path("contact/status/message/", views.follow_up, name="family_follow_up"),
    path("contact/status/withdraw/", views.withdraw, name="family_withdraw"),
    path("contact/status/leave/", views.leave, name="family_leave"),
]
