"""Demo data for `make run`: one user per role, a few teams. Safe to run again."""

import base64

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from casework.models import Role, Team, User

DEMO_PASSWORD = "passage-demo-2026"

# username, first name, last name, role
DEMO_USERS = [
    ("admin", "Ada", "Lindqvist", Role.ADMINISTRATOR),
    ("coordinator", "Shirin", "Moradi", Role.COORDINATOR),
    ("caseworker", "Jonas", "Berg", Role.CASEWORKER),
    ("caseworker2", "Leila", "Haddad", Role.CASEWORKER),
    ("auditor", "Martin", "Okafor", Role.AUDITOR),
]

# team, coordinators, caseworkers
DEMO_TEAMS = [
    ("Refuge and arrival", ["coordinator"], ["caseworker"]),
    ("Resettlement", ["coordinator"], ["caseworker", "caseworker2"]),
    ("Family reunification", ["coordinator"], ["caseworker2"]),
]


class Command(BaseCommand):
    help = "Create demo staff, teams and second-factor devices (DEBUG only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo only runs with DEBUG on: it creates known passwords.")
        with transaction.atomic():
            users = {row[0]: self.user(*row) for row in DEMO_USERS}
            for name, coordinators, members in DEMO_TEAMS:
                team, _ = Team.objects.get_or_create(name=name)
                team.coordinators.add(*(users[u] for u in coordinators))
                team.members.add(*(users[u] for u in members))
        self.print_logins(users)

    def user(self, username, first, last, role):
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"first_name": first, "last_name": last, "email": f"{username}@example.org"},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Role.group(role))
        if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
        return user

    def print_logins(self, users):
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS(f"Demo logins (password for all: {DEMO_PASSWORD})"))
        out.write("Second factor: add the secret to an authenticator app, or print the")
        out.write("current code with `make totp U=<username>`.")
        out.write("")
        out.write(f"  {'username':<13}{'role':<15}TOTP secret")
        for username, _f, _l, role in DEMO_USERS:
            device = TOTPDevice.objects.filter(user=users[username], confirmed=True).first()
            secret = base64.b32encode(device.bin_key).decode().rstrip("=")
            out.write(f"  {username:<13}{role:<15}{secret}")
        out.write("")
