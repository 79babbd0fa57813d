"""Demo data for `make run`: one user per role, a few teams, a dozen cases, tasks in the
caseworkers' queues and on the board, five family requests. Safe to run again."""

import base64
import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from casework import queues, services, vault
from casework.models import (
    Aim,
    Case,
    Priority,
    Risk,
    Role,
    Stage,
    Task,
    TaskAim,
    TaskStatus,
    TaskTemplate,
    Team,
    User,
    VaultTOTPDevice,
)
from contacts import services as contact_services
from contacts.models import ConsentEvent, NoticeText, Purpose
from families import services as family_services
from families.models import FamilyRequest

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

REFUGE, RESETTLEMENT, REUNIFICATION = (team for team, _c, _m in DEMO_TEAMS)
FAMILY_TRIAGE = REUNIFICATION  # the team designated for unmatched family requests


def person(legal_name, *, other_names=(), **fields) -> dict:
    """Every person field, empty unless given (as the intake form hands them over)."""
    out = {name: None for name in Case.PERSON_FIELDS}
    out.update(
        gender="", nationalities="", languages="", circumstances="", needs="", safety_notes=""
    )
    out.update(legal_name=legal_name, other_names=list(other_names), **fields)
    return out


def place(country, city, address, phone, *, email="", safe_contact="", code_word="") -> dict:
    return {
        "country": country,
        "city": city,
        "address": address,
        "phone": phone,
        "email": email,
        "safe_contact": safe_contact,
        "code_word": code_word,
    }


D = datetime.date

# Made-up people. Every place, street and number below is fictional: the countries and
# towns come from novels and films, the phone numbers from ranges reserved for drama
# (Ofcom 07700 900xxx, PTS 070-17406xx, NANP 555-01xx), the e-mail domain is example.org.
#
# opened_by: who opens the case (a caseworker opening one is granted "work" at once);
# grants: coordinator's grants by username; stages: the path after intake;
# notes: (author, body, restricted); tracing: the person agreed to family tracing.
DEMO_CASES = [
    {
        "team": REFUGE,
        "opened_by": "coordinator",
        "person": person(
            "مریم کریمی",
            other_names=["Maryam Karimi", "Maryam Karimi-Tehrani", "خواهر مهتاب"],
            birth_date=D(1994, 3, 21),
            gender="female",
            nationalities="Iranian",
            languages="Persian, English",
            left_on=D(2026, 9, 2),
            circumstances="Left the community house at night with one bag. Lived in the "
            "group for eleven years; her passport was kept by the leadership.",
            needs="Safe housing, a new passport, counselling in Persian.",
            safety_notes="Members have phoned her sister asking where she is. Do not confirm "
            "to anyone that she is in contact with us.",
        ),
        "aims": [Aim.REFUGE, Aim.SUPPORT],
        "risk": Risk.HIGH,
        "stages": [Stage.REFUGE],
        "grants": {"caseworker": ["work", "whereabouts"]},
        "whereabouts": place(
            "Freedonia",
            "Musterstadt",
            "Musterstraße 1, 2nd floor (shelter)",
            "+44 7700 900123",
            safe_contact="Text first; she calls back from the shelter phone.",
            code_word="lantern",
        ),
        "notes": [
            (
                "caseworker",
                "First meeting at the shelter. Tired but clear about what she wants.",
                False,
            ),
            ("caseworker", "Passport replacement: appointment booked at the consulate.", False),
            (
                "caseworker",
                "She named two members who still contact her family; details kept here only.",
                True,
            ),
        ],
    },
    {
        "team": REFUGE,
        "opened_by": "coordinator",
        "person": person(
            "علی رضایی",
            other_names=["Ali Rezaei", "Ali Rezaie", "برادر نور"],
            birth_year=1988,
            gender="male",
            nationalities="Iranian",
            languages="Persian, Turkish",
            left_on=D(2026, 11, 20),
            circumstances="Was a mid-level leader inside the group ('Brother Light'). Left "
            "after a dispute about money.",
            needs="Emergency housing, legal advice on the debts signed in his name.",
            safety_notes="Group leadership considers him a traitor. Meet only in public places.",
        ),
        "aims": [Aim.REFUGE],
        "risk": Risk.CRITICAL,
        "stages": [],
        "grants": {"caseworker": ["work"]},
        "notes": [
            (
                "coordinator",
                "Referral by phone from a former member. Intake meeting arranged.",
                False,
            ),
            (
                "caseworker",
                "Asked for legal advice before anything else; referred to the clinic.",
                False,
            ),
        ],
    },
    {
        "team": REFUGE,
        "opened_by": "caseworker",
        "person": person(
            "Emre Yıldız",
            other_names=["Emre Yildiz", "Kardeş Umut"],
            birth_date=D(1999, 7, 9),
            gender="male",
            nationalities="Turkish",
            languages="Turkish, German",
            left_on=D(2026, 10, 14),
            circumstances="Born into the group; left with help from a school friend.",
            needs="Somewhere to live, help finishing his vocational training.",
        ),
        "aims": [Aim.REFUGE, Aim.SUPPORT],
        "risk": Risk.MEDIUM,
        "stages": [Stage.REFUGE],
        "grants": {},
        "tracing": True,  # agreed that family requests may be compared
        "notes": [
            ("caseworker", "Settled into the shelter. Sleeps badly; counselling offered.", False),
            ("caseworker", "Wants his mother to know he is safe, but not where he is.", True),
        ],
    },
    {
        "team": REFUGE,
        "opened_by": "coordinator",
        "person": person(
            "Ingrid Solberg",
            other_names=["Sister Morning"],
            birth_year=1971,
            gender="female",
            nationalities="Norwegian",
            languages="Norwegian, English",
            left_on=D(2025, 4, 30),
            circumstances="Left the group in spring 2025 after twenty years.",
            needs="Counselling; now settled and working.",
        ),
        "aims": [Aim.SUPPORT],
        "risk": Risk.LOW,
        "stages": [Stage.REFUGE, Stage.CLOSED],
        "grants": {"caseworker": ["work"]},
        "notes": [
            ("caseworker", "Counselling finished; she feels ready to go on alone.", False),
            ("coordinator", "Closed at her request. She may contact us again at any time.", False),
        ],
    },
    {
        "team": REFUGE,
        "opened_by": "coordinator",
        "person": person(
            "Mikkel Sørensen",
            other_names=["Mikkel Sorensen"],
            birth_year=2003,
            gender="male",
            nationalities="Danish",
            languages="Danish, English",
            left_on=D(2026, 11, 25),
            circumstances="Called the helpline from a train station.",
        ),
        "aims": [Aim.REFUGE],
        "risk": Risk.HIGH,
        "stages": [],
        "grants": {},  # just in: no caseworker yet
        "notes": [
            ("coordinator", "Helpline call; a caseworker will be assigned in the morning.", False),
            (
                "coordinator",
                "Staying with a friend tonight; the friend's address is known to the group.",
                True,
            ),
        ],
    },
    {
        "team": RESETTLEMENT,
        "opened_by": "coordinator",
        "person": person(
            "Astrid Nyström",
            other_names=["Astrid Nystrom", "Sister Dawn"],
            birth_date=D(1985, 12, 1),
            gender="female",
            nationalities="Swedish",
            languages="Swedish, English",
            left_on=D(2026, 2, 11),
            circumstances="Left with her two children after the group moved abroad.",
            needs="School places for the children, a flat, a job in bookkeeping.",
        ),
        "aims": [Aim.RESETTLEMENT, Aim.SUPPORT],
        "risk": Risk.MEDIUM,
        "stages": [Stage.REFUGE, Stage.RESETTLEMENT],
        "grants": {"caseworker": ["work", "whereabouts"], "caseworker2": ["view"]},
        "tracing": True,  # agreed that family requests may be compared
        "whereabouts": place(
            "Ruritania",
            "Ankeborg",
            "Exempelgatan 12 B",
            "+46 70 174 06 12",
            email="astrid.demo@example.org",
            safe_contact="E-mail is safe; the phone may be shared with her ex-partner.",
        ),
        "notes": [
            ("caseworker", "Flat viewing went well; the landlord accepts the guarantee.", False),
            ("caseworker", "Both children have school places from January.", False),
            (
                "caseworker",
                "Her ex-partner is still a member and asks the children about her plans.",
                True,
            ),
        ],
    },
    {
        "team": RESETTLEMENT,
        "opened_by": "coordinator",
        "person": person(
            "Lukas Becker",
            other_names=["Bruder Lukas"],
            birth_date=D(1979, 5, 17),
            gender="male",
            nationalities="German",
            languages="German",
            left_on=D(2026, 1, 8),
            circumstances="Worked unpaid for the group's businesses for fifteen years.",
            needs="Pension records, a bank account, job training.",
        ),
        "aims": [Aim.RESETTLEMENT],
        "risk": Risk.LOW,
        "stages": [Stage.RESETTLEMENT],
        "grants": {"caseworker2": ["work"]},
        "tracing": True,  # agreed that family requests may be compared
        "notes": [
            ("caseworker2", "Bank account opened. Job training starts next month.", False),
            (
                "caseworker2",
                "Pension office needs proof of the unpaid years: letter drafted.",
                False,
            ),
        ],
    },
    {
        "team": RESETTLEMENT,
        "opened_by": "coordinator",
        "person": person(
            "فاطمه احمدی",
            other_names=["Fatemeh Ahmadi", "Fatima Ahmadi"],
            birth_year=1990,
            gender="female",
            nationalities="Iranian, Swedish",
            languages="Persian, Swedish",
            left_on=D(2026, 6, 3),
            circumstances="Left after the group told her to divorce her husband.",
            needs="Work permit questions, Swedish course, housing.",
        ),
        "aims": [Aim.RESETTLEMENT, Aim.SUPPORT],
        "risk": Risk.MEDIUM,
        "stages": [Stage.REFUGE, Stage.RESETTLEMENT],
        "grants": {"caseworker": ["work"], "caseworker2": ["work"]},
        "tracing": True,  # agreed that family requests may be compared
        "notes": [
            ("caseworker2", "جلسه اول به فارسی برگزار شد. برای کلاس زبان ثبت‌نام کرد.", False),
            ("caseworker", "Housing application submitted.", False),
            ("caseworker2", "Her husband is still inside; she fears he will be pressured.", True),
        ],
    },
    {
        "team": RESETTLEMENT,
        "opened_by": "coordinator",
        "sealed": True,
        "person": person(
            "رضا موسوی",
            other_names=["Reza Mousavi", "Reza Musavi", "استاد رضا"],
            birth_date=D(1968, 10, 5),
            gender="male",
            nationalities="Iranian",
            languages="Persian, English, Arabic",
            left_on=D(2026, 8, 19),
            circumstances="A former member of the group's inner council; cooperating with an "
            "inquiry.",
            needs="Protection, legal support, a new identity may be needed.",
            safety_notes="Sealed: only named staff. Never discuss this case on the phone.",
        ),
        "aims": [Aim.RESETTLEMENT],
        "risk": Risk.CRITICAL,
        "stages": [Stage.RESETTLEMENT],
        "grants": {"caseworker2": ["work", "whereabouts"]},
        "whereabouts": place(
            "Borduria",
            "Springfield",
            "Calle Falsa 123",
            "+1 555 0142",
            safe_contact="Only through his lawyer's office.",
            code_word="orchard",
        ),
        "notes": [
            ("caseworker2", "Meeting with his lawyer; next steps agreed.", False),
            ("caseworker2", "He gave names of people still at risk inside; kept here only.", True),
        ],
    },
    {
        "team": REUNIFICATION,
        "opened_by": "coordinator",
        "person": person(
            "Lucía Fernández Ortega",
            other_names=["Lucia Fernandez", "Hermana Luz"],
            birth_date=D(1982, 8, 30),
            gender="female",
            nationalities="Spanish",
            languages="Spanish, English",
            left_on=D(2025, 11, 2),
            circumstances="Left the group; her teenage son stayed with his father inside.",
            needs="Contact with her son, family-court support.",
        ),
        "aims": [Aim.REUNIFICATION],
        "risk": Risk.HIGH,
        "stages": [Stage.RESETTLEMENT, Stage.REUNIFICATION],
        "grants": {"caseworker2": ["work", "whereabouts"]},
        "tracing": True,  # agreed that family requests may be compared
        "whereabouts": place(
            "Freedonia",
            "Musterstadt",
            "Calle Falsa 45, 1º izq.",
            "+44 7700 900456",
            email="lucia.demo@example.org",
        ),
        "notes": [
            ("caseworker2", "The court has set a hearing on contact with her son.", False),
            ("caseworker2", "Her son wrote to her secretly; letter kept by her lawyer.", True),
        ],
    },
    {
        "team": REUNIFICATION,
        "opened_by": "caseworker2",
        "person": person(
            "زهرا حسینی",
            other_names=["Zahra Hosseini", "Zahra Hoseini", "خواهر امید"],
            birth_year=1997,
            gender="female",
            nationalities="Iranian",
            languages="Persian",
            left_on=D(2026, 5, 12),
            circumstances="Her parents left the group last year; she followed in May.",
            needs="To meet her parents safely; help with documents.",
        ),
        "aims": [Aim.REUNIFICATION, Aim.SUPPORT],
        "risk": Risk.MEDIUM,
        "stages": [Stage.REUNIFICATION],
        "grants": {"caseworker2": ["whereabouts"]},
        "tracing": True,  # agreed that family requests may be compared
        "whereabouts": place("Ruritania", "Ankeborg", "Exempelgatan 7", "+46 70 174 06 45"),
        "notes": [
            ("caseworker2", "Her parents agreed to a first meeting at our office.", False),
            ("caseworker2", "Meeting went well; a second one is planned.", False),
        ],
    },
    {
        "team": REUNIFICATION,
        "opened_by": "coordinator",
        "person": person(
            "Katharina Vogel",
            other_names=["Schwester Katharina"],
            birth_date=D(1992, 1, 23),
            gender="female",
            nationalities="German, Austrian",
            languages="German, English",
            left_on=D(2026, 11, 1),
            circumstances="Wants to find her brother, who left the group years ago.",
        ),
        "aims": [Aim.REUNIFICATION, Aim.SUPPORT],
        "risk": Risk.LOW,
        "stages": [],
        "grants": {"caseworker2": ["work"]},
        "notes": [
            ("coordinator", "Intake by video call.", False),
            ("caseworker2", "Searching the family-request records for her brother.", False),
        ],
    },
]


# Tasks on the demo cases, made by the coordinator through casework.queues as staff would.
# case: the demo case's legal name; due: days from today (negative: overdue), None for no
# date; assignee: a demo caseworker who can see the case, or None (the team queue);
# status: set by the assignee afterwards. The titles also mark the demo tasks as made.
DEMO_TASKS = [
    {
        "case": "علی رضایی",
        "title": "Legal clinic: the debts signed in his name",
        "aim": TaskAim.SUPPORT,
        "priority": Priority.HIGH,
        "due": -3,  # overdue
        "assignee": "caseworker",
        "status": TaskStatus.IN_PROGRESS,
    },
    {
        "case": "Emre Yıldız",
        "title": "Ask the college about finishing his training",
        "aim": TaskAim.SUPPORT,
        "priority": Priority.NORMAL,
        "due": 10,
        "assignee": "caseworker",
    },
    {
        "case": "Astrid Nyström",
        "title": "Send the schools the children's records",
        "aim": TaskAim.RESETTLEMENT,
        "priority": Priority.NORMAL,
        "due": 5,
        "assignee": "caseworker",
        "status": TaskStatus.WAITING,
    },
    {
        "case": "Mikkel Sørensen",
        "title": "First meeting: agree a safety plan",
        "aim": TaskAim.REFUGE,
        "priority": Priority.HIGH,
        "due": 1,
        "assignee": None,  # no caseworker yet: the team queue
    },
    {
        "case": "Lukas Becker",
        "title": "Follow up the letter to the pension office",
        "aim": TaskAim.RESETTLEMENT,
        "priority": Priority.NORMAL,
        "due": 14,
        "assignee": "caseworker2",
        "status": TaskStatus.WAITING,
    },
    {
        "case": "Lucía Fernández Ortega",
        "title": "Prepare her for the hearing on contact with her son",
        "aim": TaskAim.REUNIFICATION,
        "priority": Priority.URGENT,
        "due": 2,
        "assignee": "caseworker2",
        "status": TaskStatus.IN_PROGRESS,
    },
    {
        "case": "زهرا حسینی",
        "title": "Plan the second meeting with her parents",
        "aim": TaskAim.REUNIFICATION,
        "priority": Priority.NORMAL,
        "due": 12,
        "assignee": "caseworker2",
    },
    {
        "case": "Katharina Vogel",
        "title": "Look through the family requests for her brother",
        "aim": TaskAim.REUNIFICATION,
        "priority": Priority.NORMAL,
        "due": None,
        "assignee": "caseworker2",
    },
    {
        "case": "زهرا حسینی",
        "title": "Help with her identity documents",
        "aim": TaskAim.ADMINISTRATION,
        "priority": Priority.LOW,
        "due": None,
        "assignee": None,
    },
]

# Checklists (TaskTemplate, from the migrations) applied to one case each; the items go,
# in order, to these caseworkers (None and any item past the list: unassigned).
DEMO_CHECKLISTS = [
    (
        "Resettlement checklist",
        "فاطمه احمدی",
        ["caseworker", "caseworker2", "caseworker", "caseworker2", None, "caseworker"],
    ),
    ("Arrival and refuge", "مریم کریمی", ["caseworker", "caseworker", "caseworker", None, None]),
]


def family_request(requester, relationship, country, phone, *, sought, born, message) -> dict:
    """What the public form hands to request_submit (ContactRequestForm.request_data)."""
    return {
        "requester_name": requester,
        "relationship": relationship,
        "requester_country": country,
        "requester_email": "",
        "requester_phone": phone,
        "sought_names": list(sought),
        "sought_birth_year": born,
        "last_place": "",
        "last_year": None,
        "other_details": "",
        "message": message,
    }


# Family requests as families would send them through /contact/, from made-up
# requesters with phones from Ofcom's drama range. then: what staff did after the
# screening and matching ("triage": nothing yet); case: the demo case it is about.
DEMO_REQUESTS = [
    {
        # Arabic yeh (ي) where the case has the Persian one (ی): the index still matches.
        "then": "triage",
        "language": "fa",
        "data": family_request(
            "حميد احمدي",
            "برادر",
            "Iran",
            "+44 7700 900201",
            sought=["فاطمه احمدي"],
            born=1990,
            message="خواهر عزیزم، فقط می‌خواهیم بدانیم حالت خوب است.",
        ),
    },
    {
        "then": "triage",  # nobody of that name: no candidate
        "language": "en",
        "data": family_request(
            "Greta Lindholm",
            "sister",
            "Sweden",
            "+44 7700 900202",
            sought=["Elin Lindholm", "Sister Willow"],
            born=1995,
            message="Elin, we miss you. Mum is well and would love to hear from you.",
        ),
    },
    {
        # A demo person who gave no tracing consent: no candidate, so the coordinator
        # closes it as no match (the family only ever reads "closed").
        "then": "close",
        "language": "en",
        "data": family_request(
            "Hans Solberg",
            "cousin",
            "Norway",
            "+44 7700 900203",
            sought=["Ingrid Solberg"],
            born=1971,
            message="Ingrid, the family farm is sold; your share is waiting for you.",
        ),
    },
    {
        "then": "hand_over",
        "case": "Lucía Fernández Ortega",
        "language": "en",
        "data": family_request(
            "Pablo Fernández",
            "brother",
            "Spain",
            "+44 7700 900204",
            sought=["Lucía Fernández Ortega", "Hermana Luz"],
            born=1982,
            message="Lucía, our father is ill and asks for you every day.",
        ),
    },
    {
        "then": "relay",
        "case": "Emre Yıldız",
        "language": "en",
        "data": family_request(
            "Ayşe Yıldız",
            "mother",
            "Turkey",
            "+44 7700 900205",
            sought=["Emre Yildiz"],
            born=1999,
            message="Emre, my son, I only want to know that you are safe.",
        ),
        "follow_up": "Thank you for passing on my message. Tell him I light a candle every Friday.",
    },
]


class Command(BaseCommand):
    help = "Create demo staff, teams, second-factor devices and cases (DEBUG only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo only runs with DEBUG on: it creates known passwords.")
        with transaction.atomic():
            users = {row[0]: self.user(*row) for row in DEMO_USERS}
            teams = {}
            for name, coordinators, members in DEMO_TEAMS:
                team, _ = Team.objects.get_or_create(name=name)
                if name == FAMILY_TRIAGE and not team.family_triage:
                    # Unmatched family requests go to this team's coordinators.
                    team.family_triage = True
                    team.save(update_fields=["family_triage"])
                team.coordinators.add(*(users[u] for u in coordinators))
                team.members.add(*(users[u] for u in members))
                teams[name] = team
        self.print_logins(users)
        self.seed_cases(users, teams)
        self.seed_tasks(users, teams)
        self.seed_family_requests(users, teams)

    def user(self, username, first, last, role):
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"first_name": first, "last_name": last, "email": f"{username}@example.org"},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Role.group(role))
        if not VaultTOTPDevice.objects.filter(user=user, confirmed=True).exists():
            VaultTOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
        return user

    def seed_cases(self, users, teams):
        # Any case in a demo team means the demo cases are there (or someone is using
        # the demo teams for real work): add none. One transaction, so a failed run
        # leaves no half set behind that would block the next one.
        if Case.objects.filter(team__in=teams.values()).exists():
            self.stdout.write("Demo cases: already there, none added.")
            return
        with transaction.atomic():
            cases = [self.open_case(spec, users, teams) for spec in DEMO_CASES]
        # Counts only: names of (even made-up) people never go to the terminal.
        sealed = sum(c.sealed for c in cases)
        closed = sum(c.stage == Stage.CLOSED for c in cases)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo cases: {len(cases)} opened in {len(teams)} teams "
                f"({sealed} sealed, {closed} closed), with notes, whereabouts and grants."
            )
        )

    def open_case(self, spec, users, teams) -> Case:
        """Through the services, as staff would: each step writes its access event."""
        coordinator = users["coordinator"]
        case = services.case_open(
            actor=users[spec["opened_by"]],
            team=teams[spec["team"]],
            person=spec["person"],
            aims=spec["aims"],
            risk=spec["risk"],
        )
        for username, levels in spec["grants"].items():
            for level in levels:
                services.access_grant(
                    actor=coordinator, case=case, user=users[username], level=level
                )
        for stage in spec["stages"]:
            services.case_change_stage(actor=coordinator, case=case, stage=stage)
        if spec.get("whereabouts"):
            services.whereabouts_save(
                actor=self.worker(spec, users), case=case, data=spec["whereabouts"]
            )
        for author, body, restricted in spec["notes"]:
            services.note_add(actor=users[author], case=case, body=body, restricted=restricted)
        if spec.get("sealed"):
            services.case_seal(actor=coordinator, case=case, sealed=True)
        return case

    def seed_tasks(self, users, teams):
        """Demo tasks and two checklists through casework.queues, as the coordinator would
        make and hand them out; then the assignees move a few along. One transaction;
        skipped once any demo task is there (found by its title, decrypted)."""
        demo = Case.objects.filter(team__in=teams.values()).select_related("data_key", "team")
        cases = {case.legal_name: case for case in demo}
        needed = {spec["case"] for spec in DEMO_TASKS} | {c for _t, c, _a in DEMO_CHECKLISTS}
        if not needed <= set(cases):
            self.stdout.write("Demo tasks: the demo cases are not all there, none added.")
            return
        titles = {spec["title"] for spec in DEMO_TASKS}
        there = Task.objects.filter(case__in=demo).select_related("case__data_key")
        if any(task.title in titles for task in there):
            self.stdout.write("Demo tasks: already there, none added.")
            return
        coordinator = users["coordinator"]
        today = timezone.localdate()
        made, applied = [], 0
        with transaction.atomic():
            for spec in DEMO_TASKS:
                assignee = users[spec["assignee"]] if spec["assignee"] else None
                task = queues.task_create(
                    actor=coordinator,
                    case=cases[spec["case"]],
                    title=spec["title"],
                    aim=spec["aim"],
                    priority=spec["priority"],
                    due_on=None if spec["due"] is None else today + datetime.timedelta(spec["due"]),
                    assignee=assignee,
                )
                if spec.get("status"):
                    queues.task_set_status(actor=assignee, task=task, status=spec["status"])
                made.append(task)
            for name, case_name, assignees in DEMO_CHECKLISTS:
                # The migrations make the checklists; a flushed test database has none.
                template = TaskTemplate.objects.filter(name=name, active=True).first()
                if template is None:
                    continue
                items = queues.template_apply(
                    actor=coordinator, case=cases[case_name], template=template
                )
                for task, username in zip(items, assignees, strict=False):
                    if username:
                        queues.task_assign(
                            actor=coordinator, tasks=[task], assignee=users[username]
                        )
                made.extend(items)
                applied += 1
        # Counts only: neither the titles nor the people's names go to the terminal.
        assigned = sum(t.assignee_id is not None for t in made)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo tasks: {len(made)} made on {len({t.case_id for t in made})} cases "
                f"({applied} checklists applied): {assigned} assigned, "
                f"{len(made) - assigned} unassigned, {sum(t.is_overdue for t in made)} overdue, "
                f"{sum(t.priority == Priority.URGENT for t in made)} urgent."
            )
        )

    def seed_family_requests(self, users, teams):
        """Family-tracing consent on half the demo cases, then the demo family requests,
        through the services as the public form and the staff would. The worker's
        screening and matching run here, so the demo needs no worker. One transaction;
        skipped once any demo request is there (found through its requester's phone)."""
        found = FamilyRequest.objects.select_related("data_key")
        if any(
            vault.search(found, "family.requester_phones", spec["data"]["requester_phone"])
            for spec in DEMO_REQUESTS
        ):
            self.stdout.write("Demo family requests: already there, none added.")
            return
        # The notice texts come with the migrations; a flushed test database has none.
        if any(NoticeText.current(p, "en") is None for p in ("tracing", "relay", "family_request")):
            self.stdout.write("Demo family requests: no notice texts to show, none added.")
            return
        demo = Case.objects.filter(team__in=teams.values()).select_related("data_key", "team")
        cases = {case.legal_name: case for case in demo}
        needed = {s["person"]["legal_name"] for s in DEMO_CASES if s.get("tracing")}
        needed |= {spec["case"] for spec in DEMO_REQUESTS if "case" in spec}
        if not needed <= set(cases):
            self.stdout.write("Demo family requests: the demo cases are not all there, none added.")
            return
        with transaction.atomic():
            consenting = [s for s in DEMO_CASES if s.get("tracing")]
            for spec in consenting:
                contact_services.consent_record(
                    actor=self.caseworker(spec, users),
                    case=cases[spec["person"]["legal_name"]],
                    purpose=Purpose.TRACING,
                    decision=ConsentEvent.Decision.GRANTED,
                    method=ConsentEvent.Method.IN_PERSON,
                    notice=NoticeText.current(Purpose.TRACING, "en"),
                )
            made = [self.family_request(spec, users, cases) for spec in DEMO_REQUESTS]
        stages = [r.stage for r, _secret in made]
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo family requests: {len(made)} made "
                f"({stages.count(FamilyRequest.Stage.TRIAGE)} in triage, "
                f"{stages.count(FamilyRequest.Stage.HANDED)} handed over, "
                f"{stages.count(FamilyRequest.Stage.RELAY)} relaying messages, "
                f"{stages.count(FamilyRequest.Stage.CLOSED)} closed); family-tracing consent "
                f"for {len(consenting)} of {len(DEMO_CASES)} demo cases."
            )
        )
        # Only a reference and its secret: the family's side of the relay request, for
        # trying /contact/status/. Shown because DEBUG is on (seed_demo refuses otherwise);
        # the secret is kept only as a MAC and cannot be shown again.
        relay = next(i for i, spec in enumerate(DEMO_REQUESTS) if spec["then"] == "relay")
        request, secret = made[relay]
        self.stdout.write(
            f"Demo family credentials (DEBUG only), for /contact/status/: "
            f"reference {request.reference}  secret {secret}"
        )
        self.stdout.write("")

    def family_request(self, spec, users, cases) -> tuple[FamilyRequest, str]:
        coordinator = users["coordinator"]
        notice = NoticeText.current("family_request", spec["language"])
        request, secret = family_services.request_submit(
            data=spec["data"], language=spec["language"], notice_sha256=notice.sha256
        )
        family_services.process(request)  # the worker will find it processed already
        request = FamilyRequest.objects.select_related("data_key").get(pk=request.pk)
        then = spec["then"]
        if then == "close":
            family_services.triage_close(
                actor=coordinator, family_request=request, outcome=FamilyRequest.Outcome.NO_MATCH
            )
        elif then in ("hand_over", "relay"):
            case = cases[spec["case"]]
            family_services.triage_hand_over(actor=coordinator, family_request=request, case=case)
        if then == "relay":
            case_spec = next(s for s in DEMO_CASES if s["person"]["legal_name"] == spec["case"])
            family_services.record_answer(
                actor=self.caseworker(case_spec, users),
                family_request=request,
                answer="relay",
                method=ConsentEvent.Method.IN_PERSON,
            )
            family_services.family_follow_up(family_request=request, body=spec["follow_up"])
        return request, secret

    def caseworker(self, spec, users) -> User:
        """Who works on the case: the caseworker who opened it or was granted work on it,
        else the coordinator."""
        if users[spec["opened_by"]].has_role(Role.CASEWORKER):
            return users[spec["opened_by"]]
        for username, levels in spec["grants"].items():
            if "work" in levels:
                return users[username]
        return users["coordinator"]

    def worker(self, spec, users) -> User:
        """Who keeps the whereabouts: the caseworker granted them, else the coordinator."""
        for username, levels in spec["grants"].items():
            if "whereabouts" in levels:
                return users[username]
        return users["coordinator"]

    def print_logins(self, users):
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS(f"Demo logins (password for all: {DEMO_PASSWORD})"))
        out.write("Second factor: add the secret to an authenticator app, or print the")
        out.write("current code with `make totp U=<username>`.")
        out.write("")
        out.write(f"  {'username':<13}{'role':<15}TOTP secret")
        for username, _f, _l, role in DEMO_USERS:
            device = VaultTOTPDevice.objects.filter(user=users[username], confirmed=True).first()
            secret = base64.b32encode(device.bin_key).decode().rstrip("=")
            out.write(f"  {username:<13}{role:<15}{secret}")
        out.write("")
