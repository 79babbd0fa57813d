"""The access log: every read and every change of case content, hash-chained.

1. `record()` is called by the code that does the thing, in the same transaction, with
   a namespaced action code ("case.viewed", "case.updated", "access.granted", ...).
   It stores names of fields and codes, never decrypted content.
2. Writers are serialised (a PostgreSQL advisory lock; SQLite's write lock), read the
   last row's MAC, and insert `seq = last + 1` with
   `mac = HMAC(audit_key, previous mac | canonical form of this row)`.
3. Database triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), so the
   log is append-only even for code that forgets; `verify()` (and
   `manage.py verify_audit`) recomputes the chain and names the first broken link.
"""

import datetime
import hashlib
import hmac
import json
import uuid

from django.db import connection, transaction
from django.utils import timezone

from . import vault

TABLE = "casework_accessevent"
LOCK_KEY = 0x5041_5353  # "PASS": the advisory lock every writer takes

# Codes an auditor's report treats as worth a second look.
FLAGGED_ACTIONS = {"case.break_glass", "case.sealed_opened"}


def record(actor, action: str, *, case=None, obj=None, fields=(), detail=None, flagged=None):
    """Append one event. Call it inside the transaction of the change it records.

    The request id and client address come from the request being served (set by
    RequestIdMiddleware), so callers pass an actor, never an HTTP request.
    """
    from .logs import client_ip_var, request_id_var
    from .models import AccessEvent

    actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        _lock()
        last = AccessEvent.objects.order_by("-seq").values_list("seq", "mac").first()
        seq, previous = (last[0] + 1, last[1]) if last else (1, "")
        event = AccessEvent(
            seq=seq,
            at=timezone.now(),
            actor=actor,
            action=action,
            case=case,
            object_type=type(obj).__name__.lower() if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            fields=sorted(fields),
            # Through JSON once: the chain is computed on what the database gives back.
            detail=json.loads(json.dumps(detail or {})),
            flagged=action in FLAGGED_ACTIONS if flagged is None else flagged,
            request_id=request_id_var.get(),
            ip=client_ip_var.get(),
        )
        event.mac = _mac(previous, event)
        event.save(force_insert=True)
    return event


def canonical_ip(request):
    """The client address in canonical form (as the database will store it), or None."""
    import ipaddress

    from .security import client_ip

    try:
        return ipaddress.ip_address(client_ip(request)).compressed
    except ValueError:  # absent, or a proxy's "addr:port": better none than a failed write
        return None


def _lock():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def canonical(event) -> bytes:
    at = event.at.astimezone(datetime.UTC)
    parts = [
        str(event.seq),
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
    return "\x1f".join(parts).encode()


def _mac(previous: str, event) -> str:
    key = vault.keyring().audit_key
    return hmac.new(key, previous.encode() + b"\x1e" + canonical(event), hashlib.sha256).hexdigest()


def verify(batch_size: int = 2000):
    """Recompute the chain. Returns (rows checked, first broken seq or None)."""
    from .models import AccessEvent

    previous, expected_seq, checked = "", 1, 0
    for event in AccessEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if event.seq != expected_seq or not hmac.compare_digest(_mac(previous, event), event.mac):
            return checked, event.seq if event.seq == expected_seq else expected_seq
        previous, expected_seq, checked = event.mac, event.seq + 1, checked + 1
    return checked, None


# --- Triggers -------------------------------------------------------------------------------
def append_only_tables() -> list[tuple[str, str]]:
    """(table, primary-key column) of every model marked `append_only = True`."""
    from django.apps import apps

    return [
        (m._meta.db_table, m._meta.pk.column)
        for m in apps.get_models()
        if getattr(m, "append_only", False)
    ]


def install_triggers(schema_editor_or_connection, table: str = TABLE, pk: str = "seq") -> None:
    target = schema_editor_or_connection
    conn = target if hasattr(target, "vendor") else target.connection
    with conn.cursor() as cursor:
        for sql in _trigger_sql(conn.vendor, table, pk):
            cursor.execute(sql)


def drop_triggers(conn, table: str = TABLE) -> None:
    with conn.cursor() as cursor:
        if conn.vendor == "sqlite":
            for op in ("update", "delete", "replace"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        elif conn.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")


def _trigger_sql(vendor: str, table: str, pk: str) -> list[str]:
    message = f"{table} is append-only"
    if vendor == "sqlite":
        return [
            *(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                for op in ("update", "delete")
            ),
            # INSERT OR REPLACE would delete without firing the delete trigger.
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {pk} = NEW.{pk}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        ]
    if vendor == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION passage_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql",
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION passage_append_only()",
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
