"""A seeded site for the benchmark and the load test: Passage's rows and the plain
baseline's copies of them (tooling/plain.py), grown in steps (1,000, then 10,000, ...).

1. `Site.open(prefix)`: ten teams, two caseworkers and a coordinator each (found again
   if a load test's database already has them, so a second run adds nothing).
2. `site.grow(n)`: cases up to `n`, in bulk, each under its own data key with its name
   index, and the same values in the plain tables. Around them, at fixed rates so every
   size has the same shape:
   - every tenth case (in runs of ten) a task and two notes, and its caseworker named
     on it; every tenth a tracing consent; every 50th a do-not-disclose entry; every
     100th a family request waiting for triage (half with a candidate);
   - the caseworker of the measurements (`site.caseworker`) works on 200 cases of teams
     0 and 5; the coordinator of team 0 (`site.coordinator`) sees that team's cases;
   - the first case (`site.featured`), the one whose page is measured, has six notes (one
     restricted, two with attachments), four tasks, two stage changes, a family request
     handed to it, a do-not-disclose entry and a tracing consent.
Every value comes from a random generator seeded by the case's number: the same size gives
the same site, whatever steps it was grown in.
"""

import datetime
import random
import secrets
import time
import uuid

from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.utils import timezone

from casework import vault
from casework.models import (
    ACTIVE_STATUSES,
    Aim,
    CaseUserObjectPermission,
    Priority,
    Risk,
    Role,
    Stage,
    TaskAim,
    TaskStatus,
    Team,
    User,
)

TEAMS = 10
CASELOAD = 200  # cases the measured caseworker works on
CHUNK = 2_000

# --- Values -------------------------------------------------------------------------------------
FIRST = ["محمد", "علی", "فاطمه", "زهرا", "رضا", "مریم", "حسین", "سارا", "Maryam", "Reza",
         "Anna", "José", "Lukas", "Amira", "Yusuf", "Elif", "Daniel", "Sofia", "Omid", "Leyla"]  # fmt: skip
LAST = ["کریمی", "حسینی", "احمدی", "رضایی", "موسوی", "Karimi", "Hosseini", "García", "Berg",
        "Novak", "Haddad", "Yilmaz", "Schmidt", "Rossi", "Tehrani", "Nazari", "Sadeghi"]  # fmt: skip
NEEDS = [
    "Safe housing and counselling.",
    "A new passport; help with the bank and the tax office.",
    "School places for the children, a flat, work.",
    "Contact with family members still inside.",
]
CIRCUMSTANCES = [
    "Left the community house at night with one bag after eleven years in the group.",
    "Born into the group; left with help from a school friend.",
    "Worked unpaid for the group's businesses for fifteen years.",
    "Left after the group told her to divorce her husband.",
]
NOTES = [
    "Called back as agreed. She is sleeping better and wants to start the language course "
    "in the spring; we talked through the appointment at the residence office.",
    "Met at the office. Brought the tax letter; we filled in the form together. Next step: "
    "the bank account, once the address is registered.",
    "He asked again whether his mother could be told that he is safe. Explained the "
    "consent form and that nothing is shared unless he agrees.",
    "Safety plan reviewed: new phone number given to the counsellor only. The group's "
    "members were seen near the old flat last week.",
]
TASK_TITLES = [
    "Residence-permit appointment", "Housing", "Bank account", "Doctor registration",
    "Counselling intake", "Language course", "Agree a safety plan with the person",
    "Arrange safe transport", "Find emergency accommodation",
    "Book legal advice on asylum or residence", "Replace lost or withheld identity documents",
    "Check-in call", "Review risk level", "File signed consent forms",
]  # fmt: skip


def fake_names(n, seed=1):
    rng = random.Random(seed)
    return [f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.randrange(10**6):06d}" for _ in range(n)]


def fake_cases(n, seed=3, prefix="P") -> list[dict]:
    """`n` cases as plain values, shared by the encrypted rows and the baseline. The
    first `m` of `fake_cases(n)` are `fake_cases(m)`."""
    rng = random.Random(seed)
    first_day = datetime.date(2020, 1, 1)
    out = []
    for i, name in enumerate(fake_names(n, seed)):
        opened = first_day + datetime.timedelta(days=rng.randrange(2_500))
        stage = rng.choice(Stage.values)
        out.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "reference": f"{prefix}-{opened.year}-{i + 1:06d}",
                "stage": stage,
                "risk": rng.choice(Risk.values),
                "aims": rng.sample(Aim.values, rng.randint(1, 2)),
                "opened_on": opened,
                "closed_on": opened + datetime.timedelta(days=300)
                if stage == Stage.CLOSED
                else None,
                "legal_name": name,
                "other_names": [f"{rng.choice(FIRST)} {rng.choice(LAST)}", "برادر نور"],
                "birth_date": None,
                "birth_year": rng.randint(1950, 2006),
                "gender": rng.choice(["female", "male", ""]),
                "nationalities": rng.choice(["Iranian", "Swedish", "German", "Spanish, Turkish"]),
                "languages": rng.choice(["Persian, English", "Swedish", "German, Turkish"]),
                "left_on": opened - datetime.timedelta(days=rng.randrange(90)),
                "circumstances": rng.choice(CIRCUMSTANCES),
                "needs": rng.choice(NEEDS),
                "safety_notes": "",
            }
        )
    return out


def plain_case_values(values: dict) -> dict:
    """A case's values for the plain table (its team, an index into the site's, apart)."""
    out = {k: v for k, v in values.items() if k != "team"}
    return {**out, "other_names": "\n".join(values["other_names"])}


def due_date(rng, today):
    """About 12% overdue, 25% undated, the rest within two months."""
    roll = rng.random()
    if roll < 0.12:
        return today - datetime.timedelta(days=rng.randint(1, 30))
    if roll < 0.37:
        return None
    return today + datetime.timedelta(days=rng.randint(0, 60))


def fake_task(rng, today, now, assignee) -> dict:
    if rng.random() < 1 / 3:
        title = f"Call back {rng.choice(FIRST)} {rng.choice(LAST)}"
    else:
        title = rng.choice(TASK_TITLES)
    return {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "assignee": assignee,
        "title": title,
        "details": rng.choice(["", *NEEDS, *CIRCUMSTANCES]),
        "aim": rng.choice(TaskAim.values),
        "priority": rng.choices(Priority.values, weights=[5, 20, 55, 20])[0],
        "due_on": due_date(rng, today),
        "status": TaskStatus.OPEN
        if assignee is None
        else rng.choices(ACTIVE_STATUSES, weights=[60, 30, 10])[0],
        "created_at": now - datetime.timedelta(minutes=rng.randrange(90 * 24 * 60)),
    }


# --- Writing encrypted rows in bulk ----------------------------------------------------------
def new_data_key(purpose: str, owner_id):
    from casework.models import DataKey

    key = DataKey(id=uuid.uuid4(), purpose=purpose, owner_id=owner_id)
    key.kek_id, key.wrapped = vault.wrap_dek(
        secrets.token_bytes(vault.KEY_BYTES), purpose=purpose, owner_id=owner_id
    )
    return key


def index_entries(model, rows, data_key_of) -> list:
    """Every blind-index entry of `rows` (as vault.update_blind_indexes would write)."""
    from casework.models import BlindIndexEntry

    out = []
    for index in vault.blind_indexes(model):
        key = index.key()
        for row in rows:
            out.extend(
                BlindIndexEntry(
                    index=index.name, kind=k, value=v, row_id=row.pk, data_key=data_key_of(row)
                )
                for k, v in index.entries(row, key)
            )
    return out


def load_cases(values: list[dict], teams: list, *, indexed=True) -> list:
    """Cases under their own data keys (bulk_create skips save(), so the keys and the
    index entries are written here); the saved rows, each with its key attached."""
    from casework.models import BlindIndexEntry, Case, DataKey

    rows = []
    for start in range(0, len(values), CHUNK):
        chunk = []
        for v in values[start : start + CHUNK]:
            row = Case(team=teams[v["team"]], **{k: x for k, x in v.items() if k != "team"})
            row.data_key = new_data_key("case", row.pk)
            chunk.append(row)
        DataKey.objects.bulk_create([r.data_key for r in chunk])
        Case.objects.bulk_create(chunk)
        if indexed:
            BlindIndexEntry.objects.bulk_create(
                index_entries(Case, chunk, lambda r: r.data_key), batch_size=CHUNK
            )
        rows.extend(chunk)
    return rows


def grant_work(grants: dict, perms=("view_case", "change_case")) -> None:
    """Object permissions on each user's case ids, in one bulk insert."""
    found = Permission.objects.filter(content_type__app_label="casework", codename__in=perms)
    CaseUserObjectPermission.objects.bulk_create(
        (
            CaseUserObjectPermission(user=user, permission=perm, content_object_id=pk)
            for user, ids in grants.items()
            for pk in ids
            for perm in found
        ),
        batch_size=5_000,
    )


# --- The site --------------------------------------------------------------------------------------
class Site:
    """Teams, staff and cases for the measurements; see the module's docstring."""

    def __init__(self, prefix, teams, caseworkers, coordinators):
        self.prefix = prefix
        self.teams = teams
        self.caseworkers = caseworkers  # {team index: [two users]}
        self.coordinators = coordinators  # {team index: user}
        self.caseworker = caseworkers[0][0]
        self.coordinator = coordinators[0]
        self.values: list[dict] = []
        self.n = 0
        self.caseload = 0

    @classmethod
    def open(cls, prefix: str = "bench", *, password_hash: str | None = None) -> "Site":
        """Create the teams and staff, or find them. With `password_hash` every staff
        member can log in (the load test); each has a confirmed authenticator device."""
        from casework.models import VaultTOTPDevice

        teams, caseworkers, coordinators = [], {}, {}
        caseworker_group, coordinator_group = (
            Role.group(Role.CASEWORKER),
            Role.group(Role.COORDINATOR),
        )
        for t in range(TEAMS):
            team, _ = Team.objects.get_or_create(
                name=f"{prefix} team {t}", defaults={"family_triage": t == 0}
            )
            teams.append(team)
            people = []
            for j in range(2):
                user, _ = User.objects.get_or_create(
                    username=f"{prefix}-cw-{t}-{j}",
                    defaults={"first_name": FIRST[(t * 2 + j) % 20], "last_name": LAST[t]},
                )
                caseworker_group.user_set.add(user)
                team.members.add(user)
                people.append(user)
            caseworkers[t] = people
            coordinator, _ = User.objects.get_or_create(username=f"{prefix}-co-{t}")
            coordinator_group.user_set.add(coordinator)
            team.coordinators.add(coordinator)
            coordinators[t] = coordinator
        site = cls(prefix, teams, caseworkers, coordinators)
        site.teams[5].members.add(site.caseworker)  # works on teams 0 and 5
        staff = [u for people in caseworkers.values() for u in people] + list(coordinators.values())
        if password_hash:
            User.objects.filter(pk__in=[u.pk for u in staff]).update(password=password_hash)
        for user in staff:
            VaultTOTPDevice.objects.get_or_create(
                user=user, confirmed=True, defaults={"name": "benchmark"}
            )
        site.n = site._cases().count()
        if site.n:
            site.values = fake_cases(site.n)
            for i, v in enumerate(site.values):
                v["team"] = i % TEAMS
            site.caseload = min(CASELOAD, sum(1 for i in range(site.n) if i % 5 == 0))
        return site

    def _cases(self):
        from casework.models import Case

        return Case.objects.filter(team__in=self.teams)

    @property
    def featured(self):
        return self.values[0]["id"]

    def case_values(self, i: int) -> dict:
        return self.values[i]

    def grow(self, n: int) -> float:
        """Cases (and what goes with them) up to `n`; the seconds it took."""
        if n <= self.n:
            return 0.0
        start = time.perf_counter()
        values = fake_cases(n)
        for i, v in enumerate(values):
            v["team"] = i % TEAMS
        new, first = values[self.n :], self.n
        self.values = values
        with transaction.atomic():
            for offset in range(0, len(new), CHUNK * 5):
                part = new[offset : offset + CHUNK * 5]
                self._write(first + offset, part)
        self.n = n
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # as autovacuum would soon: plans for the new size
        return time.perf_counter() - start

    def _write(self, first: int, values: list[dict]) -> None:
        from . import plain

        rows = load_cases(values, self.teams)
        plain.PlainCase.objects.bulk_create(
            (plain.PlainCase(**plain_case_values(v), team=self.teams[v["team"]]) for v in values),
            batch_size=CHUNK,
        )
        extras = Extras(self)
        for offset, row in enumerate(rows):
            extras.add(first + offset, row, values[offset])
        extras.save()


class Extras:
    """What goes with a batch of cases: notes, tasks, grants, consent, requests, entries."""

    def __init__(self, site: Site):
        from . import plain

        self.site, self.plain = site, plain
        self.today, self.now = timezone.localdate(), timezone.now()
        self.notes, self.attachments, self.tasks, self.stage_changes = [], [], [], []
        self.consents, self.requests, self.candidates, self.dnd = [], [], [], []
        self.plain_tracing = []  # ids of the plain cases that consented to tracing
        self.grants: dict = {}
        self.plain_rows: dict[str, list] = {}

    def _plain(self, model, **values):
        self.plain_rows.setdefault(model, []).append(getattr(self.plain, model)(**values))

    def _grant(self, user, case_id, work=True):
        self.grants.setdefault(user, set()).add(case_id)
        self._plain("PlainGrant", user=user, case_id=case_id, work=work)

    def add(self, i: int, row, values: dict) -> None:
        rng = random.Random(f"{self.site.prefix}-{i}")
        team = values["team"]
        if i % 5 == 0 and self.site.caseload < CASELOAD:
            self.site.caseload += 1
            self._grant(self.site.caseworker, row.pk)
        if i == 0:
            self.featured(row, rng)
        elif (i // 10) % 10 == 0:
            worker = self.site.caseworkers[team][(i // 100) % 2]
            if worker != self.site.caseworker or not self._granted(worker, row.pk):
                self._grant(worker, row.pk)
            self.note(row, rng, worker)
            self.note(row, rng, worker)
            self.task(row, rng, None if i % 4 == 0 else worker)
        if (i // 10) % 10 == 5 or i == 0:
            self.consent(row)
        if i % 50 == 25 or i == 0:
            self.do_not_disclose(row, rng)
        if i % 100 == 50:
            self.family_request(row, rng, values, candidate=i % 200 == 50)

    def _granted(self, user, case_id) -> bool:
        return case_id in self.grants.get(user, ())

    def featured(self, row, rng) -> None:
        from casework.models import StageChange

        worker = self.site.caseworker
        for k in range(6):
            note = self.note(row, rng, worker, restricted=k == 4)
            if k in (1, 3):
                self.attachment(row, note, rng, worker)
        for _ in range(4):
            self.task(row, rng, worker)
        for k, (old, new) in enumerate([("", Stage.INTAKE), (Stage.INTAKE, row.stage)]):
            values = {
                "case_id": row.pk,
                "from_stage": old,
                "to_stage": new,
                "changed_by": worker,
                "changed_at": self.now - datetime.timedelta(days=30 - k),
            }
            self.stage_changes.append(StageChange(**values))
            self._plain("PlainStageChange", **values)
        self.family_request(row, rng, self.site.values[0], candidate=True, handed=True)

    def note(self, row, rng, author, restricted=False):
        from casework.models import Note

        values = {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "author": author,
            "created_at": self.now - datetime.timedelta(hours=rng.randrange(24 * 200)),
            "restricted": restricted,
            "body": rng.choice(NOTES),
        }
        note = Note(case=row, **values)
        self.notes.append(note)
        self._plain("PlainNote", case_id=row.pk, **values)
        return note

    def attachment(self, row, note, rng, author) -> None:
        from casework.models import Attachment

        data = rng.randbytes(rng.randrange(20_000, 200_000))
        name = f"scan-{rng.randrange(1000):03d}.pdf"
        values = {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "size": len(data),
            "filename": name,
            "content_type": "application/pdf",
            "created_at": note.created_at,
        }
        blob = vault.save_file(row.data_key, data)
        self.attachments.append(
            Attachment(case=row, note=note, blob_name=blob, uploaded_by=author, **values)
        )
        self._plain("PlainAttachment", case_id=row.pk, note_id=note.pk, **values)

    def task(self, row, rng, assignee) -> None:
        from casework.models import Task

        values = fake_task(rng, self.today, self.now, assignee)
        self.tasks.append(
            Task(case=row, team_id=row.team_id, created_by=self.site.coordinator, **values)
        )
        self._plain(
            "PlainTask",
            case_id=row.pk,
            team_id=row.team_id,
            created_by=self.site.coordinator,
            **values,
        )

    def consent(self, row) -> None:
        from contacts.models import ConsentEvent, Purpose

        self.consents.append(
            ConsentEvent(
                case_id=row.pk,
                purpose=Purpose.TRACING,
                decision=ConsentEvent.Decision.GRANTED,
                method=ConsentEvent.Method.IN_PERSON,
                notice_sha256="benchmark",
            )
        )
        self.plain_tracing.append(row.pk)

    def do_not_disclose(self, row, rng) -> None:
        from contacts.models import DoNotDisclose

        values = {
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "phone": f"+46 70 {rng.randrange(10**6):06d}",
            "email": f"someone{rng.randrange(10**6)}@example.org",
        }
        self.dnd.append(DoNotDisclose(case=row, note="Member of the group's leadership.", **values))
        self._plain("PlainDoNotDisclose", case_id=row.pk, **values)

    def family_request(self, row, rng, values, *, candidate=False, handed=False) -> None:
        from families.models import FamilyRequest, MatchCandidate, new_reference, secret_digest

        sought = (
            [values["legal_name"]]
            if candidate
            else [f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.randrange(10**6):06d}"]
        )
        fields = {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "reference": new_reference(),
            "stage": "handed" if handed else "triage",
            "created_at": self.now - datetime.timedelta(hours=rng.randrange(24 * 60)),
            "processed_at": self.now,
            "requester_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "relationship": rng.choice(["mother", "brother", "friend", "daughter"]),
            "requester_country": rng.choice(["Iran", "Sweden", "Germany"]),
            "requester_email": "",
            "requester_phone": f"+44 7700 {rng.randrange(10**6):06d}",
            "sought_birth_year": values["birth_year"] if candidate else None,
            "last_place": "",
            "last_year": None,
            "other_details": "",
            "message": "We think of you every day and hope you are well. " * 3,
        }
        request = FamilyRequest(
            secret_digest=secret_digest(secrets.token_hex(10)),
            notice_sha256="benchmark",
            case=row if handed else None,
            sought_names=sought,
            **fields,
        )
        request.data_key = new_data_key(FamilyRequest.vault_purpose, request.pk)
        self.requests.append(request)
        self._plain(
            "PlainFamilyRequest",
            case_id=row.pk if handed else None,
            sought_names="\n".join(sought),
            **fields,
        )
        if candidate:
            self.candidates.append(
                MatchCandidate(request=request, case=row, score=0.67, reasons=["names"])
            )
            self._plain(
                "PlainMatchCandidate",
                request_id=fields["id"],
                case_id=row.pk,
                score=0.67,
                reasons=["names"],
            )

    def save(self) -> None:
        from casework.models import (
            Attachment,
            BlindIndexEntry,
            DataKey,
            Note,
            StageChange,
            Task,
        )
        from contacts.models import ConsentEvent, DoNotDisclose
        from families.models import FamilyRequest, MatchCandidate

        plain = self.plain
        Note.objects.bulk_create(self.notes, batch_size=CHUNK)
        Attachment.objects.bulk_create(self.attachments)
        Task.objects.bulk_create(self.tasks, batch_size=CHUNK)
        StageChange.objects.bulk_create(self.stage_changes)
        ConsentEvent.objects.bulk_create(self.consents, batch_size=CHUNK)
        DoNotDisclose.objects.bulk_create(self.dnd, batch_size=CHUNK)
        BlindIndexEntry.objects.bulk_create(
            index_entries(DoNotDisclose, self.dnd, lambda r: r.case.data_key), batch_size=CHUNK
        )
        DataKey.objects.bulk_create([r.data_key for r in self.requests])
        FamilyRequest.objects.bulk_create(self.requests, batch_size=CHUNK)
        BlindIndexEntry.objects.bulk_create(
            index_entries(FamilyRequest, self.requests, lambda r: r.data_key), batch_size=CHUNK
        )
        MatchCandidate.objects.bulk_create(self.candidates, batch_size=CHUNK)
        grant_work(self.grants)
        for model in (
            "PlainGrant",
            "PlainStageChange",
            "PlainNote",
            "PlainAttachment",
            "PlainTask",
            "PlainDoNotDisclose",
            "PlainFamilyRequest",
            "PlainMatchCandidate",
        ):
            getattr(plain, model).objects.bulk_create(
                self.plain_rows.get(model, []), batch_size=CHUNK
            )
        tracing = self.plain_tracing
        for start in range(0, len(tracing), CHUNK):
            plain.PlainCase.objects.filter(pk__in=tracing[start : start + CHUNK]).update(
                tracing=True
            )
