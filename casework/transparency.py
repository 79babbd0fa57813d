"""The access log as a transparency log, after Certificate Transparency (RFC 6962, RFC 9162).

1. Writers (`audit.record`) insert their event in their own transaction and take no
   lock: `seq` is an identity column and each row carries `mac = HMAC(audit_key,
   content)`, so only a holder of the keyring can write an event that verifies.
2. The sequencer (`sequence()`: a beat job every few seconds, and on demand) integrates
   committed events into a Merkle tree, in its own transaction, under a lock on the
   `LogState` row, which writers never touch. Positions are given as events are found,
   in seq order. Identity values commit out of order and a rolled-back transaction
   leaves a gap, so a gap below the highest seq seen is kept as a "hole" and looked at
   again on every run: an event that commits late is integrated when it appears, at the
   next position. A hole still empty after HOLE_WAIT is taken for a rollback; an event
   committing even later is found by `verify_audit`, which integrates it.
3. The tree is RFC 9162's: leaf hash H(0x00 || leaf), node H(0x01 || left || right),
   where a leaf is the event's canonical form and MAC (`audit.leaf`). Stored: one
   `LogLeaf` per position (its event and leaf hash) and one `LogNode` per complete
   subtree, so a batch is appended in O(batch + log n) and any root or proof reads
   O(log n) stored hashes.
4. After a run that grew the tree, a checkpoint (tree size, root hash, time) is signed
   with an Ed25519 key derived from the audit key (HKDF: the keyring and its
   fingerprint stay as they are) and appended to a file in PASSAGE_CHECKPOINT_DIR,
   outside the database, in the C2SP signed-note format; the public key is published
   beside it, so anyone can check a checkpoint without the keyring. Once a day the
   auditors are e-mailed the newest checkpoint's size and root hash.
5. `verify_log()` recomputes every leaf from its row (and its MAC with the audit key),
   every stored node from its children, the root at each checkpoint's size, checks each
   checkpoint's signature and a consistency proof to the current tree, and fails if the
   tree is shorter than a checkpoint (the cut tail). Inclusion proofs let an auditor's
   export prove each row (`verify_export` checks them with the public key only).
"""

import base64
import datetime
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

__all__ = ["LogLeaf", "LogNode", "LogState"]

logger = logging.getLogger("passage.audit")

BATCH = 5000  # events per integration transaction
HOLE_WAIT = datetime.timedelta(hours=1)  # far longer than any transaction that logs
MAX_HOLES = 1000
CHECKPOINT_FILE = "checkpoints.txt"
KEY_FILE = "log.pub"
SIGNING_INFO = b"passage access log: checkpoint signing key (Ed25519)"


# --- RFC 9162 hashing and proofs (pure) ---------------------------------------------------------
def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as complete subtrees (level, index), left to right: for the ranges a
    proof names, sizes shrink to the right and their hashes fold into the range's hash."""
    out = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: list[bytes]) -> bytes:
    """The hash of a range from its complete subtrees' hashes (left to right)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"position {index} is not in a tree of {size}")
    path, start, end = [], 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    return path[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make PROOF(old, D[0:new]) (RFC 9162 2.1.4.1)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    proof, start, end, m, whole = [], 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append((start + k, end))
            end = start + k
        else:
            proof.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append((start, end))
    return proof[::-1]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: is the leaf hash `leaf` at `index` in the tree of `size` with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof) -> bool:
    """RFC 9162 2.1.4.2: is the tree of `new` with `new_root` an extension of the tree of
    `old` with `old_root`?"""
    if old == new:
        return old_root == new_root and not proof
    if not 0 < old < new or not proof:
        return False
    proof = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is a node of the new tree
        proof.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


def append_leaf(frontier: list, position: int, leaf: bytes, made: list) -> None:
    """Append a leaf hash to `frontier` (the complete subtrees of the tree so far, as
    (level, index, hash), left to right); the nodes completed go to `made`."""
    level, index, h = 0, position, leaf
    while frontier and frontier[-1][0] == level:
        _, left_index, left = frontier.pop()
        level, index, h = level + 1, left_index >> 1, node_hash(left, h)
        made.append((level, index, h))
    frontier.append((level, index, h))


def frontier_root(frontier: list) -> bytes:
    return fold([h for _level, _index, h in frontier])


# --- Signed checkpoints (C2SP tlog-checkpoint in a signed note) -----------------------------------
class CheckpointError(Exception):
    """The checkpoint directory cannot be used (not writable, or another log's key)."""


@dataclass
class Checkpoint:
    size: int
    root: bytes
    time: str  # RFC 3339, UTC
    # A restore note: the checkpoints before it larger than this one are of a lost history.
    restored_over: int = 0
    text: str = ""  # the signed note, as stored
    # The restore note after it that names its history as lost if the tree no longer
    # holds it (set by verification: a checkpoint of a history the restore replaced).
    lost_to: "Checkpoint | None" = None
    valid: bool = True  # its signature verifies with the log's key
    number: int = 0  # 1-based, in the file

    @property
    def root_hex(self) -> str:
        return self.root.hex()


def signing_key(audit_key: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=SIGNING_INFO).derive(audit_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(private) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public: bytes) -> bytes:
    """The signed-note key id: the first 4 bytes of SHA-256(name || LF || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The public key as a signed-note verifier key: name+hex id+base64(0x01 || key)."""
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, Ed25519 public key) from a verifier key; ValueError if it is not one."""
    name, hex_id, encoded = text.strip().split("+", 2)
    raw = base64.b64decode(encoded, validate=True)
    if raw[:1] != b"\x01" or len(raw) != 33 or key_id(name, raw[1:]).hex() != hex_id:
        raise ValueError("not an Ed25519 signed-note verifier key")
    return name, raw[1:]


def note_body(name: str, size: int, root: bytes, at: str, restored_over: int = 0) -> str:
    lines = [name, str(size), base64.b64encode(root).decode(), f"time {at}"]
    if restored_over:
        lines.append(f"restored-over {restored_over}")
    return "\n".join(lines) + "\n"


def sign_note(body: str, name: str, private) -> str:
    signature = private.sign(body.encode())
    stamp = base64.b64encode(key_id(name, public_bytes(private)) + signature).decode()
    return f"{body}\n\u2014 {name} {stamp}\n"


def parse_notes(text: str, name: str, public: bytes) -> list[Checkpoint]:
    """Every checkpoint in a file of signed notes (each followed by a blank line), in
    file order, with its signature checked against the key (`name`, `public`)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    verifier = Ed25519PublicKey.from_public_bytes(public)
    wanted = key_id(name, public)
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        body = []
        while i < len(lines) and lines[i]:
            body.append(lines[i])
            i += 1
        i += 1
        signatures = []
        while i < len(lines) and lines[i].startswith("\u2014 "):
            signatures.append(lines[i])
            i += 1
        body_text = "\n".join(body) + "\n"
        cp = _checkpoint_from(body)
        cp.number = len(out) + 1
        cp.text = body_text + "\n" + "".join(s + "\n" for s in signatures)
        cp.valid = False
        for line in signatures:
            try:
                signer, stamp = line[2:].split(" ")
                raw = base64.b64decode(stamp, validate=True)
                if signer == name and raw[:4] == wanted and len(raw) == 68:
                    verifier.verify(raw[4:], body_text.encode())
                    cp.valid = body[0] == name
            except (ValueError, InvalidSignature):
                continue
        out.append(cp)
    return out


def _checkpoint_from(body: list[str]) -> Checkpoint:
    try:
        cp = Checkpoint(size=int(body[1]), root=base64.b64decode(body[2], validate=True), time="")
    except (IndexError, ValueError):
        return Checkpoint(size=-1, root=b"", time="", valid=False)
    for line in body[3:]:
        word, _, value = line.partition(" ")
        if word == "time":
            cp.time = value
        elif word == "restored-over" and value.isdigit():
            cp.restored_over = int(value)
    return cp


# --- Models -----------------------------------------------------------------------------------
class LogLeaf(models.Model):
    """One event in the tree: its position and leaf hash. Append-only, like the log."""

    append_only = True  # database triggers refuse UPDATE and DELETE (casework/audit.py)

    position = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(
        "casework.AccessEvent",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_column="event_seq",
        related_name="leaf",
    )
    hash = models.BinaryField(max_length=32)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"leaf {self.position}"


class LogNode(models.Model):
    """The hash of a complete subtree above the leaves: 2**level leaves from position
    index * 2**level. `key` is level << 48 | index (one indexed column)."""

    append_only = True

    key = models.BigIntegerField(primary_key=True)
    hash = models.BinaryField(max_length=32)

    class Meta:
        default_permissions = ()

    def __str__(self):
        level, index = divmod(self.key, 1 << 48)
        return f"node {level}/{index}"


def node_key(level: int, index: int) -> int:
    return (level << 48) | index


class LogState(models.Model):
    """The sequencer's bookkeeping (one row; its lock makes sequencers take turns).
    Nothing here is trusted by verification, which recomputes it all."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    size = models.BigIntegerField(default=0)
    root = models.BinaryField(max_length=32, default=EMPTY_ROOT)
    scanned_to = models.BigIntegerField(default=0)  # every seq up to here: in the tree or a hole
    holes = models.JSONField(default=list)  # [[first seq, last seq, seen at (ISO)], ...]
    checkpointed_size = models.BigIntegerField(default=0)  # the largest checkpoint written
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"access log tree of {self.size}"


# --- The stored tree -----------------------------------------------------------------------------
def _chunks(items: list, size: int = 900):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def stored_hashes(nodes: Iterable[tuple[int, int]]) -> dict:
    """{(level, index): hash} of stored complete subtrees (two queries at most)."""
    nodes = set(nodes)
    out = {}
    leaves = sorted(i for level, i in nodes if level == 0)
    inner = sorted(node_key(level, i) for level, i in nodes if level)
    for chunk in _chunks(leaves):
        found = LogLeaf.objects.filter(position__in=chunk).values_list("position", "hash")
        out.update(((0, p), bytes(h)) for p, h in found)
    for chunk in _chunks(inner):
        for key, h in LogNode.objects.filter(key__in=chunk).values_list("key", "hash"):
            out[divmod(key, 1 << 48)] = bytes(h)
    return out


def range_hashes(ranges: list[tuple[int, int]]) -> list[bytes]:
    """The hashes of RFC 9162 ranges (as proofs name them), from the stored tree."""
    needed = {node for start, end in ranges for node in subtrees(start, end)}
    known = stored_hashes(needed)
    absent = needed - known.keys()
    if absent:
        level, index = min(absent)
        raise TreeError(f"the stored tree lacks its node at level {level}, index {index}")
    return [fold([known[n] for n in subtrees(start, end)]) for start, end in ranges]


class TreeError(Exception):
    """The stored tree is missing a node it should have."""


def root_at(size: int) -> bytes:
    return range_hashes([(0, size)])[0] if size else EMPTY_ROOT


def inclusion_proofs(positions: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """{position: its inclusion proof in the tree of `size`}, read in one go."""
    wanted = {p: inclusion_ranges(p, size) for p in positions if 0 <= p < size}
    ranges = sorted({r for rs in wanted.values() for r in rs})
    hashes = dict(zip(ranges, range_hashes(ranges), strict=True))
    return {p: [hashes[r] for r in rs] for p, rs in wanted.items()}


def consistency_proof(old: int, new: int) -> list[bytes]:
    return range_hashes(consistency_ranges(old, new)) if old < new else []


# --- The sequencer --------------------------------------------------------------------------------
def integrate(*, batch: int = BATCH, seconds: float = 20.0, stragglers: bool = False) -> int:
    """Integrate committed events, a batch per transaction, until none is left or the
    time is up; returns how many. `stragglers` also looks for any event below the scanned
    range that is not in the tree (a hole given up too early): O(n), for verification."""
    deadline, total = time.monotonic() + seconds, 0
    while True:
        done, more = _integrate_batch(batch, stragglers)
        total += done
        if not more or time.monotonic() > deadline:
            return total


def _integrate_batch(limit: int, stragglers: bool) -> tuple[int, bool]:
    """One batch, in one transaction. Returns (events integrated, whether to go on).

    1. Lock the state row (an UPDATE first: on SQLite it takes the write lock at once).
    2. Read, in seq order, events above the scanned range and events in holes (and, with
       `stragglers`, any event below it not in the tree); skip those already in the tree.
    3. Give them the next positions; append their leaf hashes to the frontier (the
       complete subtrees of the tree so far); store the leaves and completed nodes.
    4. Note the gaps in seq below the highest one read as holes; drop holes found filled
       or older than HOLE_WAIT; save the state with the new size and root.
    """
    from . import audit
    from .models import AccessEvent

    with transaction.atomic():
        state = _locked_state()
        now = timezone.now()
        where = Q(seq__gt=state.scanned_to)
        for first, last, _seen in state.holes:
            where |= Q(seq__gte=first, seq__lte=last)
        if stragglers:
            outside = ~Exists(LogLeaf.objects.filter(event_id=OuterRef("seq")))
            where |= Q(outside, seq__lte=state.scanned_to)
        events = list(AccessEvent.objects.filter(where).order_by("seq")[:limit])
        seqs = [e.seq for e in events]
        integrated = set()
        for chunk in _chunks(seqs):
            integrated.update(
                LogLeaf.objects.filter(event_id__in=chunk).values_list("event_id", flat=True)
            )
        fresh = [e for e in events if e.seq not in integrated]
        state.holes, state.scanned_to = _holes(state, seqs, now)
        if fresh:
            frontier = _frontier(state.size)
            leaves, made = [], []
            for event in fresh:
                position, h = state.size + len(leaves), leaf_hash(audit.leaf(event))
                leaves.append(LogLeaf(position=position, event_id=event.seq, hash=h))
                append_leaf(frontier, position, h, made)
            LogLeaf.objects.bulk_create(leaves, batch_size=1000)
            LogNode.objects.bulk_create(
                [LogNode(key=node_key(lv, i), hash=h) for lv, i, h in made], batch_size=1000
            )
            state.size += len(fresh)
            state.root = frontier_root(frontier)
        state.updated_at = now
        state.save()
    return len(fresh), len(events) == limit


def _locked_state() -> LogState:
    if not LogState.objects.filter(pk=1).update(updated_at=timezone.now()):
        try:
            with transaction.atomic():
                _rebuilt_state().save(force_insert=True)
        except IntegrityError:  # another sequencer made it at the same moment
            pass
        LogState.objects.filter(pk=1).update(updated_at=timezone.now())
    return LogState.objects.get(pk=1)


def _rebuilt_state() -> LogState:
    """The state row, when it is missing (a flushed test database; or removed): from the
    tree itself. Events it should have seen are found by the stragglers' search."""
    last = LogLeaf.objects.order_by("-position").values_list("position", flat=True).first()
    size = 0 if last is None else last + 1
    scanned = LogLeaf.objects.order_by("-event_id").values_list("event_id", flat=True).first()
    return LogState(pk=1, size=size, root=root_at(size), scanned_to=scanned or 0)


def _frontier(size: int) -> list:
    nodes = subtrees(0, size)
    hashes = stored_hashes(nodes)
    if len(hashes) != len(nodes):
        raise TreeError(f"the stored tree of {size} lacks part of its right edge")
    return [(level, index, hashes[(level, index)]) for level, index in nodes]


def _holes(state: LogState, seqs: list[int], now) -> tuple[list, int]:
    """The holes after a batch that read `seqs` (sorted), and the new scanned_to."""
    seen = set(seqs)
    oldest = (now - HOLE_WAIT).isoformat()
    holes = []
    for first, last, seen_at in state.holes:
        if seen_at < oldest:
            logger.info("access log: seq %s-%s never committed; given up", first, last)
            continue
        start = first
        for seq in sorted(s for s in seen if first <= s <= last):
            if start < seq:
                holes.append([start, seq - 1, seen_at])
            start = seq + 1
        if start <= last:
            holes.append([start, last, seen_at])
    scanned = state.scanned_to
    for seq in (s for s in seqs if s > state.scanned_to):
        if seq > scanned + 1:
            holes.append([scanned + 1, seq - 1, now.isoformat()])
        scanned = seq
    return holes[-MAX_HOLES:], scanned


def sequence(
    *, seconds: float = 20.0, stragglers: bool = False, every: float = 0
) -> Checkpoint | None:
    """Integrate what has been written, then checkpoint the tree if it grew (and, with
    `every`, if the newest checkpoint is at least that many seconds old)."""
    integrate(seconds=seconds, stragglers=stragglers)
    return checkpoint(every=every)


# --- Checkpoints on disk --------------------------------------------------------------------------
def checkpoint_dir() -> Path | None:
    folder = settings.PASSAGE_CHECKPOINT_DIR
    return Path(folder) if folder else None


def log_key() -> tuple[str, object]:
    """(key name, signing key) of this log: the name as published in log.pub, if it is."""
    from . import vault

    private = signing_key(vault.keyring().audit_key)
    folder = checkpoint_dir()
    if folder is not None and (folder / KEY_FILE).exists():
        name, public = parse_verifier_key((folder / KEY_FILE).read_text())
        if public != public_bytes(private):
            raise CheckpointError(
                f"{folder / KEY_FILE} holds another key than this log's: checkpoints there "
                "are not this log's (or the file was replaced)"
            )
        return name, private
    from urllib.parse import urlsplit

    host = urlsplit(settings.PASSAGE_BASE_URL).hostname or "passage"
    return f"{host}/access-log", private


def read_checkpoints(folder: Path | None = None) -> list[Checkpoint]:
    folder = folder or checkpoint_dir()
    if folder is None or not (folder / CHECKPOINT_FILE).exists():
        return []
    name, private = log_key()
    return parse_notes((folder / CHECKPOINT_FILE).read_text(), name, public_bytes(private))


def latest_checkpoint(folder: Path | None = None) -> Checkpoint | None:
    """The last checkpoint in the file, read from its end (cheap, whatever its length)."""
    folder = folder or checkpoint_dir()
    path = folder / CHECKPOINT_FILE if folder is not None else None
    if path is None or not path.exists():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 4096))
        tail = handle.read().decode(errors="replace")
    name, private = log_key()
    records = tail.split("\n\n")
    # The tail may begin inside a note: the last whole note is the last body+signature pair.
    text = "\n\n".join(records[-3:]) if len(records) >= 3 else tail
    notes = [cp for cp in parse_notes(text, name, public_bytes(private)) if cp.size >= 0]
    return notes[-1] if notes else None


def checkpoint(*, restored_over: int = 0, every: float = 0) -> Checkpoint | None:
    """Sign the tree as it is and append it to the checkpoint file, unless the newest
    checkpoint there already covers it (or, with `every`, was signed less than that many
    seconds ago: the beat job's bound on the file's growth). Outside any transaction: the tree it signs has
    committed. The root is read from the stored tree and must match the sequencer's."""
    folder = checkpoint_dir()
    state = LogState.objects.filter(pk=1).first()
    if folder is None or state is None or state.size == 0:
        return None
    root = root_at(state.size)
    if root != bytes(state.root):
        raise TreeError("the stored tree's root differs from the sequencer's: not signed")
    name, private = log_key()
    folder.mkdir(parents=True, exist_ok=True)
    _publish_key(folder, name, private)
    at = timezone.now().astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = sign_note(note_body(name, state.size, root, at, restored_over), name, private)
    fd = os.open(folder / CHECKPOINT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        newest = latest_checkpoint(folder)
        if (newest.size if newest else 0) < state.checkpointed_size:
            raise CheckpointError(
                f"{folder / CHECKPOINT_FILE} holds no checkpoint of the "
                f"{state.checkpointed_size} events already checkpointed: it was replaced or "
                "cut short. Put it back from a copy; nothing is signed meanwhile"
            )
        if newest is not None and not restored_over:
            if newest.size >= state.size or _younger_than(newest, every):
                return newest
        if newest is not None and not restored_over and root_at(newest.size) != newest.root:
            raise CheckpointError(
                f"the tree does not extend the newest checkpoint ({newest.size} events): its "
                "history differs. After restoring an older backup, record the loss with "
                "`manage.py verify_audit --after-restore`; otherwise the log was rewritten. "
                "Nothing is signed"
            )
        os.write(fd, (note + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    LogState.objects.filter(pk=1, checkpointed_size__lt=state.size).update(
        checkpointed_size=state.size
    )
    cp = Checkpoint(size=state.size, root=root, time=at, restored_over=restored_over, text=note)
    _tell_auditors(cp)
    return cp


def _younger_than(cp: Checkpoint, seconds: float) -> bool:
    if not seconds:
        return False
    try:
        signed = datetime.datetime.strptime(cp.time, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    age = timezone.now() - signed.replace(tzinfo=datetime.UTC)
    return age < datetime.timedelta(seconds=seconds)


def _publish_key(folder: Path, name: str, private) -> None:
    """log.pub: the verifier key, written once and never replaced."""
    path = folder / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # log_key() has compared it
    with os.fdopen(fd, "w") as handle:
        handle.write(verifier_key(name, public_bytes(private)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _tell_auditors(cp: Checkpoint) -> None:
    """At most once a day: the auditors get the newest checkpoint's size and root hash (a
    copy outside the server that a cut tail cannot reach)."""
    from .models import Notification, Role, User
    from .outbox import notification_queue

    if not settings.PASSAGE_CHECKPOINT_EMAIL:
        return
    key = f"audit_checkpoint:{timezone.localdate().isoformat()}"
    if Notification.objects.filter(key=key).exists():
        return
    auditors = User.objects.filter(is_active=True, groups__name=Role.AUDITOR).exclude(email="")
    auditors = list(auditors.distinct())
    if not auditors:
        return
    try:
        notification_queue(
            kind="audit_checkpoint",
            recipients=auditors,
            key=key,
            codes=[str(cp.size), cp.root_hex, cp.time],
            send_now=True,
        )
    except Exception as exc:  # the checkpoint is written; the e-mail can wait for tomorrow's
        logger.warning("checkpoint e-mail not queued (%s)", type(exc).__name__)


def record_restore() -> Checkpoint | None:
    """After a restore from a backup older than the newest checkpoints: sign the restored
    tree with a note that the larger checkpoints before it are of a history now lost.
    Verification passes again, and names the loss every time it runs."""
    integrate()
    state = LogState.objects.get(pk=1)
    found = read_checkpoints()
    lost = max(
        (
            cp.size
            for i, cp in enumerate(found)
            if cp.valid
            and not _restore_after(found, i)
            and (cp.size > state.size or root_at(cp.size) != cp.root)
        ),
        default=0,
    )
    if not lost:
        return None
    return checkpoint(restored_over=lost)


def _restore_after(found: list[Checkpoint], i: int) -> Checkpoint | None:
    """The first restore note after checkpoint `i` that covers it: its history, if the
    tree no longer holds it, was lost in that restore."""
    cp = found[i]
    return next((r for r in found[i + 1 :] if r.restored_over >= cp.size), None)


# --- Verification -----------------------------------------------------------------------------
@dataclass
class Report:
    """What `verify_log` found. `problem` names the first thing wrong ("" if none)."""

    events: int = 0  # events in the tree, each recomputed from its row
    root: bytes = EMPTY_ROOT
    folder: Path | None = None
    checkpoints: int = 0  # signed checkpoints in the folder, each consistent with the tree
    lost: list = field(default_factory=list)  # [(restore checkpoint, size it was restored over)]
    pending: int = 0  # events not yet in the tree
    problem: str = ""
    seq: int | None = None  # the event at fault, when one is ("it" in `problem`)
    position: int | None = None
    written: int = 0  # the largest checkpoint in the file, lost ones included

    @property
    def ok(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        """The problem as a sentence (without the count of events verified)."""
        if self.seq is None:
            return self.problem
        at = f" (position {self.position})" if self.position is not None else ""
        return f"event #{self.seq}{at}: it {self.problem}"


def verify_log(*, integrate_first: bool = True, expect: Iterable[tuple[int, bytes]] = ()) -> Report:
    """Check the whole log (the module's docstring, 5):

    1. With `integrate_first`, run the sequencer (stragglers included) and checkpoint.
    2. Read the checkpoints: each must be signed by this log's key. A restore note marks
       the larger checkpoints before it as lost: reported, not failed. `expect` adds
       (size, root) pairs known from elsewhere (an auditor's e-mail).
    3. Walk the tree by position: no position missing, each event present, its MAC valid
       (a chained MAC for the events of the old chain, at the start), its leaf hash
       recomputed equal to the stored one. Fold the recomputed leaves into the roots at
       each checkpoint's size and at the size the sequencer recorded.
    4. Check every stored node against its two children.
    5. No checkpoint larger than the tree (the cut tail), each one's root equal to the
       tree's at its size and a consistency proof from it to the tree, none missing from
       the file (the database remembers the largest written); the sequencer's record
       equal to the tree; no event twice (a copied row); count events not in the tree.
    """
    report = Report(folder=checkpoint_dir())
    stopped = ""
    if integrate_first:
        try:
            sequence(stragglers=True)
        except (TreeError, CheckpointError) as exc:  # what is wrong is found below
            stopped = f"the sequencer stopped: {exc}"
    state = LogState.objects.filter(pk=1).first()
    checkpoints = _checkpoints_to_check(report, expect)
    if report.problem:
        return report
    sizes = {cp.size for cp in checkpoints} | ({state.size} if state else set())
    walk = _Walk(report, sizes)
    walk.run()
    for check in (_check_nodes, _check_checkpoints, _check_events):
        if report.problem:
            break
        check(report, walk, checkpoints, state)
    report.problem = report.problem or stopped
    return report


def _checkpoints_to_check(report: Report, expect) -> list[Checkpoint]:
    try:
        found = read_checkpoints(report.folder)
    except (CheckpointError, ValueError) as exc:
        report.problem = str(exc)
        return []
    report.written = max((cp.size for cp in found), default=0)
    for cp in found:
        if not cp.valid:
            report.problem = (
                f"checkpoint {cp.number} in {report.folder / CHECKPOINT_FILE} is not signed "
                "by this log's key (replaced, forged or damaged)"
            )
            return []
    kept = []
    for i, cp in enumerate(found):
        restore = _restore_after(found, i)
        if restore is None or restore.size >= cp.size:
            cp.lost_to = restore  # checked; if its root differs, its history was lost
            kept.append(cp)
        else:
            _lost(report, restore)
    report.checkpoints = len(kept)
    for size, root in expect:
        kept.append(Checkpoint(size=size, root=root, time="given", number=0))
    return kept


class _Walk:
    """Step 3: the leaves in position order, each recomputed from its row."""

    PAGE = 2000

    def __init__(self, report: Report, sizes: set[int]):
        self.report, self.sizes = report, sizes
        self.frontier, self.roots = [], {0: EMPTY_ROOT}
        self.previous, self.chained = "", True  # the old chain's MAC, while it lasts
        from . import vault

        self.key = vault.keyring().audit_key

    @property
    def size(self) -> int:
        return self.report.events

    def run(self) -> None:
        while not self.report.problem:
            page = list(
                LogLeaf.objects.filter(position__gte=self.size)
                .order_by("position")
                .values_list("position", "event_id", "hash")[: self.PAGE]
            )
            if not page:
                break
            self._check(page)
        self.report.root = frontier_root(self.frontier)

    def _check(self, page) -> None:
        from . import audit
        from .models import AccessEvent

        report = self.report
        events = AccessEvent.objects.in_bulk([seq for _p, seq, _h in page])
        for position, seq, stored in page:
            if position != self.size:
                report.problem = f"position {self.size} is missing from the tree (removed)"
                return
            event = events.get(seq)
            kind = event and audit.mac_kind(
                event, self.previous if self.chained else None, key=self.key
            )
            if event is None:
                report.problem = "is missing (deleted)"
            elif kind is None:
                report.problem = "does not match its MAC (changed, or written without the key)"
            elif leaf_hash(audit.leaf(event)) != bytes(stored):
                report.problem = "differs from its leaf in the tree"
            if report.problem:
                report.seq, report.position = seq, position
                return
            append_leaf(self.frontier, position, bytes(stored), [])
            self.chained, self.previous = kind == "chain", event.mac
            report.events += 1
            if report.events in self.sizes:
                self.roots[report.events] = frontier_root(self.frontier)


def _level(level: int):
    """(index, hash) of the stored nodes of one level, in order, a page at a time."""
    start = 0
    while True:
        if level == 0:
            rows = LogLeaf.objects.filter(position__gte=start).order_by("position")
            page = list(rows.values_list("position", "hash")[:2000])
        else:
            rows = LogNode.objects.filter(
                key__gte=node_key(level, start), key__lt=node_key(level + 1, 0)
            ).order_by("key")
            page = [(k & ((1 << 48) - 1), h) for k, h in rows.values_list("key", "hash")[:2000]]
        if not page:
            return
        for index, h in page:
            yield index, bytes(h)
        start = page[-1][0] + 1


def _check_nodes(report: Report, walk: _Walk, checkpoints, state) -> None:
    """Step 4: each stored node is the hash of its children (stored, and so, by
    induction from the recomputed leaves, right), and each level is complete."""
    level = 1
    while walk.size >> level:
        children, count = _level(level - 1), 0
        for index, h in _level(level):
            if index != count or index >= walk.size >> level:
                break
            (_, left), (_, right) = next(children), next(children)
            if node_hash(left, right) != h:
                break
            count += 1
        if count != walk.size >> level:
            report.problem = (
                f"the stored tree's node at level {level}, index {count} is wrong or missing "
                "(the proofs it gives would fail)"
            )
            return
        level += 1


def _check_checkpoints(report: Report, walk: _Walk, checkpoints, state) -> None:
    """Step 5, outside the database: the cut tail, each root, consistency, the file."""
    where = report.folder / CHECKPOINT_FILE if report.folder else "the command line"
    for cp in checkpoints:
        name = f"checkpoint {cp.number} ({cp.time}, {cp.size} events)"
        if not cp.number:
            name = f"the checkpoint given ({cp.size} events)"
        if cp.size > walk.size:
            report.problem = (
                f"the tree holds {walk.size} events but {name} in {where} holds more: "
                "the log's newest events were removed"
            )
            return
        if walk.roots.get(cp.size) != cp.root and cp.lost_to is not None:
            _lost(report, cp.lost_to)
            continue
        if walk.roots.get(cp.size) != cp.root:
            report.problem = (
                f"{name} does not match the log: events before position {cp.size} "
                "were changed or removed"
            )
            return
    # Every checkpoint left holds the tree's root at its size (a lost one does not).
    held = [cp.size for cp in checkpoints if walk.roots.get(cp.size) == cp.root]
    sizes = sorted({size for size in held if 0 < size < walk.size})
    for chunk in _chunks(sizes, 200):
        ranges = {s: consistency_ranges(s, walk.size) for s in chunk}
        flat = sorted({r for rs in ranges.values() for r in rs})
        hashes = dict(zip(flat, range_hashes(flat), strict=True))
        for s, rs in ranges.items():
            proof = [hashes[r] for r in rs]
            if not verify_consistency(s, walk.size, walk.roots[s], report.root, proof):
                report.problem = f"no valid consistency proof from {s} events to the tree"
                return
    if state is not None and report.folder is not None and state.checkpointed_size > report.written:
        report.problem = (
            f"a checkpoint of {state.checkpointed_size} events was written to {where}, "
            "which now holds none that large: checkpoints were removed"
        )


def _lost(report: Report, restore: Checkpoint) -> None:
    if not any(r is restore for r, _ in report.lost):
        report.lost.append((restore, restore.restored_over))


def _check_events(report: Report, walk: _Walk, checkpoints, state) -> None:
    """Step 5, in the database: the sequencer's record, copied rows, events waiting."""
    from .models import AccessEvent

    if state is not None and (
        state.size > walk.size or walk.roots.get(state.size) != bytes(state.root)
    ):
        report.problem = (
            f"the sequencer recorded a tree of {state.size} events that the stored tree "
            f"({walk.size}) does not match: leaves were removed or changed"
        )
        return
    twice = AccessEvent.objects.values("mac").annotate(n=Count("seq")).filter(n__gt=1)
    mac = twice.order_by("mac").values_list("mac", flat=True).first()
    if mac is not None:
        first, copy = (
            AccessEvent.objects.filter(mac=mac).order_by("seq").values_list("seq", flat=True)[:2]
        )
        report.problem = f"repeats event #{first} (the same MAC: a copied row)"
        report.seq = copy
        return
    outside = ~Exists(LogLeaf.objects.filter(event_id=OuterRef("seq")))
    report.pending = AccessEvent.objects.filter(outside).count()
