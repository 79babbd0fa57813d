"""Typed text survives (issue 13, item 3).

Reproduced from outside: a note posted after the idle timeout went to the login page
and its text was gone; a note whose attachment was too large showed the error and
dropped 8,000 typed characters; a full disk gave a generic 500 and lost the note.
"""

import errno
import os
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from casework import services, vault
from casework.drafts import NoteDraft
from casework.models import AccessEvent, Attachment, Note, VaultTOTPDevice
from tests.base import PASSWORD, login_verified, make_case, totp_now

pytestmark = pytest.mark.django_db

LONG_NOTE = "She called from a friend's phone and asked us not to call back. " * 130


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def case(personas):
    case = make_case(personas.team, actor=personas.coordinator)
    services.access_grant(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="work"
    )
    return case


def vault_files(media) -> list:
    return (
        [p for p in (media / "vault").rglob("*") if p.is_file()]
        if (media / "vault").exists()
        else []
    )


# --- Form errors keep the text ----------------------------------------------------------------------------
def test_a_note_too_long_comes_back_with_its_text(case, personas, media):
    client = login_verified(Client(), personas.caseworker)
    typed = "x" * 20_001
    response = client.post(reverse("note_add", args=[case.pk]), {"body": typed})
    assert response.status_code == 400
    assert response.context["note_form"]["body"].value() == typed
    assert "at most 20000 characters" in response.content.decode().replace(",", "")
    assert not Note.objects.filter(case=case).exists()


# --- A full disk -----------------------------------------------------------------------------------------
class _FullDisk:
    """The os module as casework/vault/files.py sees it, on a disk with no space left."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_note_and_leaves_no_file(case, personas, media, monkeypatch):
    from casework.vault import files

    monkeypatch.setattr(files, "os", _FullDisk())
    client = login_verified(Client(), personas.caseworker)
    response = client.post(
        reverse("note_add", args=[case.pk]),
        {"body": LONG_NOTE, "attachment": SimpleUploadedFile("letter.pdf", b"%PDF " * 1000)},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "server is out of space" in page
    assert response.context["note_form"]["body"].value() == LONG_NOTE
    assert not Note.objects.filter(case=case).exists()
    assert vault_files(media) == []  # no partial file, no temporary file


def test_a_full_disk_reads_in_persian_too(case, personas, media, monkeypatch):
    from casework.vault import files

    monkeypatch.setattr(files, "os", _FullDisk())
    client = login_verified(Client(), personas.caseworker)
    client.cookies["django_language"] = "fa"
    response = client.post(
        reverse("note_add", args=[case.pk]),
        {"body": LONG_NOTE, "attachment": SimpleUploadedFile("letter.pdf", b"%PDF")},
        HTTP_ACCEPT_LANGUAGE="fa",
    )
    assert response.status_code == 400
    assert "server is out of space" not in response.content.decode()
    assert response.context["note_form"]["body"].value() == LONG_NOTE


def test_a_note_whose_row_fails_leaves_no_file(case, personas, media, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Attachment.objects, "create", broken)
    with pytest.raises(RuntimeError):
        services.note_add(
            actor=personas.caseworker,
            case=case,
            body="text",
            restricted=False,
            upload=SimpleUploadedFile("a.pdf", b"%PDF"),
        )
    assert vault_files(media) == []
    assert not Note.objects.filter(case=case).exists()


def test_a_file_is_written_whole(case, personas, media):
    note = services.note_add(
        actor=personas.caseworker,
        case=case,
        body="text",
        restricted=False,
        upload=SimpleUploadedFile("a.pdf", b"%PDF " * 100),
    )
    (attachment,) = Attachment.objects.filter(note=note)
    (path,) = vault_files(media)
    assert path.name == attachment.blob_name and not path.name.endswith(".part")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    attachment.case = case
    assert vault.open_file(case.data_key, attachment.blob_name) == b"%PDF " * 100


# --- The idle timeout -----------------------------------------------------------------------------------
def idle(client, settings):
    """Make the session older than the idle limit."""
    session = client.session
    session["passage_seen_at"] = int(time.time()) - settings.SESSION_IDLE_SECONDS - 5
    session.save()


def log_in_again(client, user):
    client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    client.post(reverse("verify"), {"otp_token": totp_now(user)})
    assert client.session.get(DEVICE_ID_SESSION_KEY) == (
        VaultTOTPDevice.objects.get(user=user).persistent_id
    )


def test_a_note_sent_after_the_idle_timeout_is_kept_and_given_back(case, personas, settings, media):
    client = login_verified(Client(), personas.caseworker)
    idle(client, settings)
    response = client.post(reverse("note_add", args=[case.pk]), {"body": LONG_NOTE})
    assert response.status_code == 302
    assert response["Location"] == reverse("login") + f"?next=%2Fcases%2F{case.pk}%2F"
    assert not Note.objects.filter(case=case).exists()
    (draft,) = NoteDraft.objects.filter(case=case, user=personas.caseworker)
    # Encrypted under the case's key, like the note it will become.
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM casework_notedraft")
        (raw,) = cursor.fetchone()
    assert "friend's phone" not in str(bytes(raw) if raw is not None else b"")
    assert AccessEvent.objects.filter(action="note.draft_kept", actor=personas.caseworker).exists()

    log_in_again(client, personas.caseworker)
    page = client.get(reverse("case_detail", args=[case.pk]))
    assert page.status_code == 200
    assert page.context["note_form"]["body"].value() == LONG_NOTE
    assert "Your session ended while you wrote a note" in page.content.decode()
    # Given back once: the draft is gone, and the next visit shows an empty form.
    assert not NoteDraft.objects.exists()
    assert AccessEvent.objects.filter(action="note.draft_restored").exists()
    assert client.get(reverse("case_detail", args=[case.pk])).context["note_form"][
        "body"
    ].value() in (None, "")


def test_a_kept_note_is_only_for_its_writer(case, personas, settings, media):
    client = login_verified(Client(), personas.caseworker)
    idle(client, settings)
    client.post(reverse("note_add", args=[case.pk]), {"body": LONG_NOTE})
    # Someone else logs in on the same browser: nothing of it shows.
    log_in_again(client, personas.coordinator)
    page = client.get(reverse("case_detail", args=[case.pk]))
    assert page.context["note_form"]["body"].value() in (None, "")
    assert NoteDraft.objects.count() == 1


def test_no_note_is_kept_for_someone_who_lost_the_case(case, personas, settings, media):
    client = login_verified(Client(), personas.caseworker)
    idle(client, settings)
    services.access_revoke(
        actor=personas.coordinator, case=case, user=personas.caseworker, level="view"
    )
    response = client.post(reverse("note_add", args=[case.pk]), {"body": LONG_NOTE})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not NoteDraft.objects.exists()


def test_an_anonymous_post_keeps_nothing(case, media):
    response = Client().post(reverse("note_add", args=[case.pk]), {"body": LONG_NOTE})
    assert response.status_code == 302
    assert not NoteDraft.objects.exists()


def test_a_task_comment_too_long_comes_back_with_its_text(case, personas):
    from casework import queues

    task = queues.task_create(actor=personas.coordinator, case=case, title="Call", aim="refuge")
    client = login_verified(Client(), personas.caseworker)
    typed = "y" * 20_001
    response = client.post(reverse("task_comment", args=[task.pk]), {"comment": typed})
    assert response.status_code == 400
    assert response.context["comment_form"]["comment"].value() == typed
    assert not task.history.filter(kind="commented").exists()


def test_a_new_task_with_an_error_comes_back_with_its_text(case, personas):
    client = login_verified(Client(), personas.caseworker)
    details = "Bring the passport copy and the letter from the school. " * 20
    response = client.post(
        reverse("case_task_new", args=[case.pk]),
        {"title": "", "details": details, "aim": "refuge", "priority": "2"},
    )
    assert response.status_code == 400
    assert response.context["task_form"]["details"].value() == details
    assert "<details open><summary>" in response.content.decode()  # the form shows, open


def test_old_tokens_and_forgotten_drafts_are_cleared(case, personas, settings, media):
    import datetime

    from django.utils import timezone

    from casework.tasks import forget_old_form_state
    from casework.versions import FormToken, use_once

    use_once(actor=personas.caseworker, token="a" * 32)
    use_once(actor=personas.caseworker, token="b" * 32)
    client = login_verified(Client(), personas.caseworker)
    idle(client, settings)
    client.post(reverse("note_add", args=[case.pk]), {"body": LONG_NOTE})
    old = timezone.now() - datetime.timedelta(days=31)
    FormToken.objects.filter(token="a" * 32).update(used_at=old)
    forget_old_form_state()
    assert list(FormToken.objects.values_list("token", flat=True)) == ["b" * 32]
    assert NoteDraft.objects.count() == 1  # a recent draft stays
    NoteDraft.objects.update(created_at=old)
    forget_old_form_state()
    assert not NoteDraft.objects.exists()
