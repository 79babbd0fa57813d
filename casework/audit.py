"""The access log: every read and every change of case content, in a transparency log.

1. `record()` is called by the code that does the thing, in the same transaction, with
   a namespaced action code ("case.viewed", "case.updated", "access.granted", ...).
   It stores names of fields and codes, never decrypted content.
2. Writers take no lock: each event is one INSERT (`seq` is an identity column) carrying
   `mac = HMAC(audit_key, "passage-event/2" | the row without its seq)`, so nobody
   without the keyring writes an event that verifies.
3. A sequencer integrates committed events into a Merkle tree and signs checkpoints of
   it outside the database (casework/transparency.py). A leaf is the event's canonical
   form, seq included, and its MAC (`leaf()`). Events written before the tree (issue 14)
   keep their chained MAC, `HMAC(audit_key, previous MAC | row)`, checked as before.
4. Database triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), so the
   log is append-only even for code that forgets; `verify()` (and `manage.py
   verify_audit`) recomputes the log and names the first problem.
5. The same triggers guard every history table, i.e. every model marked `append_only`
   (notes, stage and task history, the consent ledger, the tree's leaves and nodes); rows
   that settle (a relayed message once reviewed, a disclosure once decided) name the
   steps forward they may still take (`History`), and the triggers refuse everything else.
"""

import datetime
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from django.utils import timezone

from . import vault

TABLE = "casework_accessevent"
MAC_V2 = b"passage-event/2\x1e"  # the MAC of an event written to the tree (vs the old chain)

# Codes an auditor's report treats as worth a second look.
FLAGGED_ACTIONS = {"case.break_glass", "case.sealed_opened"}


def record(actor, action: str, *, case=None, obj=None, fields=(), detail=None, flagged=None):
    """Append one event. Call it inside the transaction of the change it records.

    The request id and client address come from the request being served (set by
    RequestIdMiddleware), so callers pass an actor, never an HTTP request. One INSERT,
    and no lock: the sequencer orders events later.
    """
    from .logs import client_ip_var, request_id_var
    from .models import AccessEvent

    actor = actor if getattr(actor, "is_authenticated", False) else None
    event = AccessEvent(
        at=timezone.now(),
        actor=actor,
        action=action,
        case=case,
        object_type=_object_type(obj),
        object_id=str(obj.pk) if obj is not None else "",
        fields=sorted(fields),
        # Through JSON once: the MAC is computed on what the database gives back.
        detail=json.loads(json.dumps(detail or {})),
        flagged=action in FLAGGED_ACTIONS if flagged is None else flagged,
        request_id=request_id_var.get(),
        ip=client_ip_var.get(),
    )
    event.mac = _mac(vault.keyring().audit_key, event)
    event.save(force_insert=True)
    return event


def _object_type(obj) -> str:
    """The model's name; through `__class__`, which a lazy `request.user` hands on to
    the user it wraps (type() would say "simplelazyobject")."""
    return obj.__class__.__name__.lower() if obj is not None else ""


def canonical_ip(request):
    """The client address in canonical form (as the database will store it), or None."""
    import ipaddress

    from .security import client_ip

    try:
        return ipaddress.ip_address(client_ip(request)).compressed
    except ValueError:  # absent, or a proxy's "addr:port": better none than a failed write
        return None


def _content(event) -> list[str]:
    at = event.at.astimezone(datetime.UTC)
    return [
        at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        str(event.actor_id or ""),
        event.action,
        str(event.case_id or ""),
        event.object_type,
        event.object_id,
        json.dumps(list(event.fields), sort_keys=True, ensure_ascii=True),
        json.dumps(event.detail, sort_keys=True, ensure_ascii=True),
        "1" if event.flagged else "0",
        event.request_id,
        str(event.ip or ""),
    ]


def canonical(event) -> bytes:
    """The row as bytes: seq and the columns, separated by 0x1F."""
    return "\x1f".join([str(event.seq), *_content(event)]).encode()


def leaf(event) -> bytes:
    """The event's leaf in the Merkle tree: its canonical form and its MAC."""
    return canonical(event) + b"\x1e" + event.mac.encode()


def _mac(key: bytes, event) -> str:
    content = "\x1f".join(_content(event)).encode()
    return hmac.new(key, MAC_V2 + content, hashlib.sha256).hexdigest()


def _chained_mac(key: bytes, previous: str, event) -> str:
    return hmac.new(key, previous.encode() + b"\x1e" + canonical(event), hashlib.sha256).hexdigest()


def mac_kind(event, previous: str | None, key: bytes | None = None) -> str | None:
    """ "tree" if the event's MAC is a tree event's, "chain" if it continues the old chain
    after `previous` (None: the chain has ended), None if neither (changed, or forged)."""
    key = key if key is not None else vault.keyring().audit_key
    if hmac.compare_digest(_mac(key, event), event.mac):
        return "tree"
    if previous is not None and hmac.compare_digest(_chained_mac(key, previous, event), event.mac):
        return "chain"
    return None


def key_verifies_newest(audit_key: bytes, event_model=None) -> bool:
    """Does `audit_key` verify the newest access event (True if there is none)? For the
    keyring's proof against a database (casework/vault/registry.py)."""
    from django.apps import apps

    AccessEvent = event_model or apps.get_model("casework", "AccessEvent")
    events = list(AccessEvent.objects.order_by("-seq")[:2])
    if not events:
        return True
    previous = events[1].mac if len(events) > 1 else ""
    return mac_kind(events[0], previous, key=audit_key) is not None


class Verification(NamedTuple):
    checked: int  # events verified
    broken: int | str | None  # the event at fault, the problem when no one event is, or None


def verify() -> Verification:
    """Integrate what is waiting, then check the whole log (transparency.verify_log)."""
    from . import transparency

    report = transparency.verify_log()
    return Verification(report.events, None if report.ok else (report.seq or report.describe()))


# --- Triggers -------------------------------------------------------------------------------
SET = object()  # in a History step: "any value but NULL"


@dataclass(frozen=True)
class Step:
    """One change a settled row may still make: from a row whose columns match `when`,
    the columns named in `to` may take the values given there; nothing else changes.
    Values are codes; None means NULL and SET any value but NULL."""

    when: dict
    to: dict


@dataclass(frozen=True)
class History:
    """`append_only = History(...)` on a model whose rows settle (a message once
    reviewed, a disclosure once decided). While `open_while` holds (OLD row), the row
    may change, except its `keep` columns; once settled, only its `steps`. DELETE is
    always refused. `append_only = True` is a History that is settled from the start."""

    open_while: dict = field(default_factory=dict)
    keep: tuple = ()
    steps: tuple = ()


def append_only_tables() -> list[tuple[str, str]]:
    """(table, primary-key column) of every model marked `append_only`."""
    from django.apps import apps

    return [
        (m._meta.db_table, m._meta.pk.column)
        for m in apps.get_models()
        if getattr(m, "append_only", False)
    ]


def _history_of(table: str):
    """The model of an append-only table and its History (None: refuse every change)."""
    from django.apps import apps

    for model in apps.get_models():
        if model._meta.db_table == table and getattr(model, "append_only", False):
            rule = model.append_only
            return model, rule if isinstance(rule, History) else None
    return None, None


def install_triggers(schema_editor_or_connection, table: str = TABLE, pk: str = "seq") -> None:
    target = schema_editor_or_connection
    conn = target if hasattr(target, "vendor") else target.connection
    model, rule = _history_of(table)
    with conn.cursor() as cursor:
        columns = (
            [c.name for c in conn.introspection.get_table_description(cursor, table)]
            if rule is not None
            else []
        )
        for sql in _trigger_sql(
            conn.vendor, table, pk, _condition(conn.vendor, model, rule, columns)
        ):
            cursor.execute(sql)


def drop_triggers(conn, table: str = TABLE) -> None:
    with conn.cursor() as cursor:
        if conn.vendor == "sqlite":
            for op in ("update", "delete", "replace"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        elif conn.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS passage_history_{table}()")


def _condition(vendor: str, model, rule: History | None, columns: list[str]) -> str | None:
    """SQL over OLD and NEW: true for an UPDATE the rule allows (None: none is allowed).

    1. Open: OLD matches `open_while`, and no `keep` column changes.
    2. Settled: OLD matches a step's `when`, NEW matches its `to`, and every column not
       named in `to` stays as it was (on PostgreSQL the whole row, as JSON, so a column
       added later is frozen too; SQLite names the table's columns).
    """
    if rule is None:
        return None

    def col(name):
        return model._meta.get_field(name).column

    # Null-safe comparisons only: a NULL in SQLite's WHEN would let the change through.
    equal = "IS NOT DISTINCT FROM" if vendor == "postgresql" else "IS"

    def same(column):
        return f"NEW.{column} {equal} OLD.{column}"

    def matches(side, values):
        parts = []
        for name, value in values.items():
            if value is None:
                parts.append(f"{side}.{col(name)} IS NULL")
            elif value is SET:
                parts.append(f"{side}.{col(name)} IS NOT NULL")
            else:
                parts.append(f"{side}.{col(name)} {equal} {_literal(value)}")
        return parts

    def others_unchanged(changing):
        changing = [col(n) for n in changing]
        if vendor == "postgresql":
            minus = ", ".join(_literal(c) for c in changing)
            drop = f" - ARRAY[{minus}]::text[]" if changing else ""
            return [f"(to_jsonb(NEW){drop}) = (to_jsonb(OLD){drop})"]
        return [same(c) for c in columns if c not in changing]

    allowed = []
    if rule.open_while:
        allowed.append(matches("OLD", rule.open_while) + [same(col(n)) for n in rule.keep])
    for step in rule.steps:
        allowed.append(
            matches("OLD", step.when) + matches("NEW", step.to) + others_unchanged(step.to)
        )
    if not allowed:
        return None
    return " OR ".join("(" + " AND ".join(parts or ["1 = 1"]) + ")" for parts in allowed)


def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _trigger_sql(vendor: str, table: str, pk: str, allowed: str | None = None) -> list[str]:
    message = f"{table} is append-only"
    if vendor == "sqlite":
        update_when = f"WHEN NOT ({allowed}) " if allowed else ""
        return [
            *(f"DROP TRIGGER IF EXISTS {table}_no_{op}" for op in ("update", "delete", "replace")),
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} {update_when}"
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
            # INSERT OR REPLACE would delete without firing the delete trigger.
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {pk} = NEW.{pk}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        ]
    if vendor == "postgresql":
        function = "passage_append_only"
        sql = [
            "CREATE OR REPLACE FUNCTION passage_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
        ]
        if allowed:
            function = f"passage_history_{table}"
            sql.append(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$ BEGIN "
                f"IF TG_OP = 'UPDATE' AND ({allowed}) THEN RETURN NEW; END IF; "
                "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
            )
        return [
            *sql,
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION passage_append_only()",
        ]
    raise NotImplementedError(f"No append-only triggers for {vendor}")


# --- Request ids and login events -----------------------------------------------------------
class RequestIdMiddleware:
    """A random id per request, on the response and on every access event it writes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from .logs import client_ip_var, request_id_var

        request.request_id = uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        ip_token = client_ip_var.set(canonical_ip(request))
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            client_ip_var.reset(ip_token)
        response["X-Request-ID"] = request.request_id
        return response


def on_login(sender, request, user, **kwargs):
    record(user, "auth.login")


def on_logout(sender, request, user, **kwargs):
    if user is not None:
        record(user, "auth.logout")


def on_login_failed(sender, credentials, **kwargs):
    # Never the typed username: it is sometimes a password typed in the wrong box.
    record(None, "auth.login_failed")
