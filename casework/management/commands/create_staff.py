"""Create a staff account with a role, e.g. the first administrator of a new install."""

import getpass
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from casework.models import Role, User


class Command(BaseCommand):
    help = "Create a staff account with one role; the password is asked for, never an argument."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )

    def handle(self, *args, username, role, email, password_stdin, **options):
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user called {username!r} exists already.")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password again: "):
                raise CommandError("The two passwords differ.")
        user = User(username=username, email=email)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        with transaction.atomic():
            user.set_password(password)
            user.save()
            user.groups.add(Role.group(role))
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {username} ({role}). At first login they set up their authenticator app."
            )
        )
