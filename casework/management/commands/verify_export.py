"""Check an auditor's CSV export against a signed checkpoint, with the public key only.

For each row: its leaf hashes, through its inclusion proof, to the root of the checkpoint
of its `tree_size` (RFC 9162), whose signature is the log's; and the row's columns say
what its leaf says. Needs neither the database nor the keyring (run it anywhere with a
Passage checkout and `DEBUG=1`); the README shows the same check in plain Python.
"""

import csv
import datetime
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from casework.audit_views import FORMULA_STARTS


class Command(BaseCommand):
    help = (
        "Check every row of an access-log CSV export against a signed checkpoint file "
        "(from /audit/checkpoint.txt), with the log's public key only."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("export", type=Path)
        parser.add_argument("checkpoint", type=Path, help="the checkpoint file, or several notes")
        parser.add_argument(
            "--key",
            help="the log's public key (verifier key) if not taken from the checkpoint file; "
            "compare it with the one you were given when the log was set up",
        )

    def handle(self, *args, export, checkpoint, key, **options):
        from casework import transparency

        try:
            text = checkpoint.read_text()
            rows = list(csv.DictReader(export.read_text(encoding="utf-8").splitlines()))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the files ({exc})") from None
        key = key or next((line[4:] for line in text.splitlines() if line.startswith("key ")), None)
        if key is None:
            raise CommandError("no public key: give --key, or the file from /audit/checkpoint.txt")
        try:
            name, public = transparency.parse_verifier_key(key)
        except ValueError:
            raise CommandError("the public key is not a signed-note verifier key") from None
        notes = "\n".join(line for line in text.splitlines() if not line.startswith(("#", "key ")))
        roots = {cp.size: cp for cp in transparency.parse_notes(notes, name, public) if cp.valid}
        if not roots:
            raise CommandError("no checkpoint in the file is signed by that key")
        checked, skipped = 0, 0
        for line, row in enumerate(rows, start=2):
            if not row.get("proof") and not row.get("leaf"):
                skipped += 1  # not yet in the tree when exported
                continue
            problem = row_problem(row, roots)
            if problem:
                raise CommandError(f"line {line} (event #{row.get('seq')}): {problem}")
            checked += 1
        sizes = ", ".join(
            str(s) for s in sorted({int(r["tree_size"]) for r in rows if r.get("tree_size")})
        )
        self.stdout.write(
            f"OK: {checked} rows are in the signed tree ({sizes} events) of {name}, key "
            f"{key.split('+')[1]}; {skipped} rows carried no proof."
        )


def row_problem(row: dict, roots: dict) -> str:
    """What is wrong with one exported row ("" if nothing)."""
    from casework import transparency

    try:
        size, position = int(row["tree_size"]), int(row["position"])
        leaf = bytes.fromhex(row["leaf"])
        proof = [bytes.fromhex(h) for h in row["proof"].split(":") if h]
    except (KeyError, ValueError):
        return "its proof columns cannot be read"
    if size not in roots:
        return f"no signed checkpoint of {size} events in the file"
    if not transparency.verify_inclusion(
        position, size, transparency.leaf_hash(leaf), proof, roots[size].root
    ):
        return f"its proof does not lead to the signed root of {size} events"
    return differs(row, leaf)


def differs(row: dict, leaf: bytes) -> str:
    """The first column that does not say what the leaf says ("" if none). Names and case
    references are not in the leaf (it holds their ids)."""
    canonical, _, _mac = leaf.rpartition(b"\x1e")
    parts = canonical.decode().split("\x1f")
    if len(parts) != 12:
        return "its leaf cannot be read"
    (
        seq,
        at,
        _actor,
        action,
        _case,
        object_type,
        object_id,
        fields,
        detail,
        flagged,
        request,
        _ip,
    ) = parts
    when = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.UTC)
    checks = {
        "seq": row.get("seq") == seq,
        "at": _same_time(row.get("at", ""), when),
        "action": _same(row.get("action"), action),
        "object_type": _same(row.get("object_type"), object_type),
        "object_id": _same(row.get("object_id"), object_id),
        "fields": _same(row.get("fields"), ";".join(json.loads(fields))),
        "flagged": row.get("flagged") == flagged,
        "request_id": _same(row.get("request_id"), request),
        "detail": _same_json(row.get("detail"), detail),
    }
    wrong = [column for column, ok in checks.items() if not ok]
    return f"its {wrong[0]} differs from its leaf" if wrong else ""


def _unescape(cell: str) -> list[str]:
    """The cell as written, and without the quote the export puts before a formula."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return [cell, cell[1:]]
    return [cell]


def _same(cell, value: str) -> bool:
    return cell is not None and value in _unescape(cell)


def _same_json(cell, value: str) -> bool:
    try:
        return cell is not None and any(json.loads(c) == json.loads(value) for c in _unescape(cell))
    except ValueError:
        return False


def _same_time(cell: str, when: datetime.datetime) -> bool:
    try:
        return datetime.datetime.fromisoformat(cell) == when
    except ValueError:
        return False
