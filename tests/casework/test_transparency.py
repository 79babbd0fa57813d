"""The access log's Merkle tree (RFC 9162), its sequencer and its signed checkpoints."""

import base64
import datetime
import hashlib

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from casework import audit, tasks, transparency, vault
from casework.models import AccessEvent, Notification
from casework.transparency import (
    EMPTY_ROOT,
    LogLeaf,
    LogNode,
    LogState,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# --- RFC 6962 / 9162 against its reference vectors and a plain recursion ------------------------
# The test data of Certificate Transparency's reference implementation: 8 leaves, the
# root of each tree size, and inclusion (leaf, size) and consistency (old, new) proofs.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (index, size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (old, new, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def mth(hashes: list[bytes]) -> bytes:
    """MTH as RFC 9162 2.1.1 writes it, over leaf hashes: the recursion, nothing stored."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def proof_of(ranges, hashes) -> list[bytes]:
    return [mth(hashes[start:end]) for start, end in ranges]


def root_of(hashes) -> bytes:
    frontier = []
    for i, h in enumerate(hashes):
        transparency.append_leaf(frontier, i, h, [])
    return transparency.frontier_root(frontier)


def test_roots_match_the_reference_for_every_size():
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    for size in range(9):
        assert mth(hashes[:size]).hex() == ROOTS[size]
        assert root_of(hashes[:size]).hex() == ROOTS[size]  # appended, as the sequencer does


def test_proofs_match_the_reference_and_verify():
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    for index, size, expected in INCLUSION:
        proof = proof_of(inclusion_ranges(index, size), hashes)
        assert [p.hex() for p in proof] == expected
        root = bytes.fromhex(ROOTS[size])
        assert verify_inclusion(index, size, hashes[index], proof, root)
        assert not verify_inclusion(index, size, hashes[index], proof, bytes.fromhex(ROOTS[0]))
    for old, new, expected in CONSISTENCY:
        proof = proof_of(consistency_ranges(old, new), hashes) if old < new else []
        assert [p.hex() for p in proof] == expected
        roots = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
        assert verify_consistency(old, new, *roots, proof)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_every_inclusion_proof_verifies_and_no_altered_one_does(size, data):
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    root = mth(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = proof_of(inclusion_ranges(index, size), hashes)
    assert verify_inclusion(index, size, hashes[index], proof, root)
    assert not verify_inclusion(index, size, leaf_hash(b"forged"), proof, root)
    if size > 1:
        assert not verify_inclusion((index + 1) % size, size, hashes[index], proof, root)
        bent = data.draw(st.integers(0, len(proof) - 1))
        proof[bent] = bytes(32)
        assert not verify_inclusion(index, size, hashes[index], proof, root)


@settings(max_examples=150, deadline=None)
@given(new=st.integers(1, 70), data=st.data())
def test_every_consistency_proof_verifies_and_no_altered_history_does(new, data):
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(new)]
    old = data.draw(st.integers(1, new))
    proof = proof_of(consistency_ranges(old, new), hashes) if old < new else []
    assert verify_consistency(old, new, mth(hashes[:old]), mth(hashes), proof)
    changed = data.draw(st.integers(0, old - 1))
    rewritten = hashes[:changed] + [leaf_hash(b"rewritten")] + hashes[changed + 1 :]
    assert not verify_consistency(old, new, mth(rewritten[:old]), mth(hashes), proof)
    if old < new:  # a cut tail: the older tree claimed as the newer
        assert not verify_consistency(old, new, mth(hashes[:old]), mth(hashes[:-1]), proof)


# --- The stored tree and the sequencer -----------------------------------------------------------
pytestmark_db = pytest.mark.django_db


def write(n, action="test.event"):
    return [audit.record(None, action, detail={"i": i}) for i in range(n)]


def stored_leaves() -> list[bytes]:
    return [bytes(h) for h in LogLeaf.objects.order_by("position").values_list("hash", flat=True)]


@pytestmark_db
def test_the_sequencer_integrates_in_batches_and_stores_what_proofs_need():
    write(37)
    assert transparency.integrate(batch=7) == 37
    assert transparency.integrate(batch=7) == 0  # idempotent: nothing twice
    hashes = stored_leaves()
    events = AccessEvent.objects.order_by("seq")
    assert hashes == [leaf_hash(audit.leaf(e)) for e in events]  # positions in seq order
    assert LogNode.objects.count() == 37 - bin(37).count("1")  # every complete subtree once
    state = LogState.objects.get()
    assert (state.size, bytes(state.root)) == (37, mth(hashes))
    for size in (1, 2, 3, 8, 20, 37):
        assert transparency.root_at(size) == mth(hashes[:size])
    proofs = transparency.inclusion_proofs(range(37), 37)
    assert all(verify_inclusion(p, 37, hashes[p], proofs[p], mth(hashes)) for p in range(37))
    for old in (1, 5, 16, 36):
        proof = transparency.consistency_proof(old, 37)
        assert verify_consistency(old, 37, mth(hashes[:old]), mth(hashes), proof)


def holes_from(seq) -> list:
    """The holes from `seq` on (seq values before the test's own were taken by earlier
    tests' rolled-back transactions: holes too, on PostgreSQL)."""
    return [h[:2] for h in LogState.objects.get().holes if h[1] >= seq]


def event_with_seq(seq, action="test.late"):
    """An event given its seq by hand: the value another writer took but had not yet
    committed when the sequencer looked."""
    from django.utils import timezone

    event = AccessEvent(seq=seq, at=timezone.now(), action=action, fields=[], detail={})
    event.mac = audit._mac(vault.keyring().audit_key, event)
    event.save(force_insert=True)
    return event


@pytestmark_db
def test_an_event_committed_late_is_integrated_when_it_appears():
    first = write(2)[-1].seq
    event_with_seq(first + 3)  # seq first+1 and first+2 are still in open transactions
    transparency.integrate()
    state = LogState.objects.get()
    assert state.size == 3 and state.scanned_to == first + 3
    assert holes_from(first) == [[first + 1, first + 2]]
    late = event_with_seq(first + 2)  # one commits; the other rolled back
    transparency.integrate()
    assert LogLeaf.objects.get(event=late).position == 3  # the next position, not its seq's
    assert holes_from(first) == [[first + 1, first + 1]]
    assert audit.verify() == (4, None)


@pytestmark_db
def test_a_hole_is_given_up_after_an_hour_and_a_later_event_is_found_by_verification():
    first = write(1)[0].seq
    event_with_seq(first + 2)
    transparency.integrate()
    hour_ago = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)).isoformat()
    LogState.objects.update(holes=[[first + 1, first + 1, hour_ago]])
    transparency.integrate()
    assert holes_from(first) == []
    straggler = event_with_seq(first + 1)  # a transaction longer than any should be
    transparency.integrate()
    assert not LogLeaf.objects.filter(event=straggler).exists()
    assert audit.verify() == (3, None)  # verification looks for stragglers and takes them in
    assert LogLeaf.objects.get(event=straggler).position == 2


@pytestmark_db
def test_the_state_row_is_rebuilt_from_the_tree_if_it_goes():
    write(5)
    transparency.integrate()
    LogState.objects.all().delete()
    write(2)
    transparency.integrate()
    assert LogState.objects.get().size == 7
    assert audit.verify() == (7, None)


@pytestmark_db
def test_events_of_the_old_chain_stay_verifiable_and_cannot_be_continued():
    """Before issue 14 each MAC chained the previous one; migrated, they are the tree's
    first leaves, and their chain is checked as before."""
    key = vault.keyring().audit_key
    previous = ""
    for seq in (1, 2, 3):
        from django.utils import timezone

        event = AccessEvent(seq=seq, at=timezone.now(), action="old.chained", fields=[], detail={})
        event.mac = audit._chained_mac(key, previous, event)
        event.save(force_insert=True)
        previous = event.mac
    write(2)
    assert audit.verify() == (5, None)
    assert audit.key_verifies_newest(key)
    assert not audit.key_verifies_newest(vault.Keyring.generate().audit_key)
    # The old writer's way after the tree's first events (chained to the newest): the chain
    # has ended, so it is refused.
    from django.utils import timezone

    newest = AccessEvent.objects.order_by("-seq").first()
    event = AccessEvent(seq=99, at=timezone.now(), action="old.chained", fields=[], detail={})
    event.mac = audit._chained_mac(key, newest.mac, event)
    event.save(force_insert=True)
    assert audit.verify()[1] == 99


@pytestmark_db
def test_the_newest_event_proves_the_keyring_whichever_kind_it_is():
    key = vault.keyring().audit_key
    assert audit.key_verifies_newest(key)  # no event yet
    write(2)
    assert audit.key_verifies_newest(key)
    assert not audit.key_verifies_newest(vault.Keyring.generate().audit_key)


# --- Checkpoints -----------------------------------------------------------------------------------
@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.PASSAGE_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.PASSAGE_CHECKPOINT_DIR


@pytestmark_db
def test_a_checkpoint_is_a_signed_note_anyone_checks_with_the_published_key(checkpoints):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    write(3)
    cp = transparency.sequence()
    assert (cp.size, cp.root) == (3, mth(stored_leaves()))
    name, public = transparency.parse_verifier_key((checkpoints / "log.pub").read_text())
    assert name == "127.0.0.1/access-log" and len(public) == 32
    text = (checkpoints / "checkpoints.txt").read_text()
    body, signature = text.split("\n\n")[:2]
    origin, size, root, when = body.splitlines()
    assert (origin, size, base64.b64decode(root)) == (name, "3", cp.root)
    assert when.startswith("time ") and when.endswith("Z")
    # The C2SP signed note: "— <name> base64(key id || Ed25519 signature of the body)".
    assert signature.startswith(f"\u2014 {name} ")
    raw = base64.b64decode(signature.split(" ")[2])
    assert raw[:4] == transparency.key_id(name, public)
    Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], (body + "\n").encode())


@pytestmark_db
def test_checkpoints_are_appended_never_rewritten_and_only_when_the_tree_grew(checkpoints):
    write(2)
    transparency.sequence()
    first = (checkpoints / "checkpoints.txt").read_bytes()
    key = (checkpoints / "log.pub").read_bytes()
    assert transparency.sequence().size == 2  # nothing new: the same checkpoint, no new note
    assert (checkpoints / "checkpoints.txt").read_bytes() == first
    write(1)
    transparency.sequence()
    grown = (checkpoints / "checkpoints.txt").read_bytes()
    assert grown.startswith(first) and len(grown) > len(first)
    assert (checkpoints / "log.pub").read_bytes() == key
    assert [cp.size for cp in transparency.read_checkpoints()] == [2, 3]
    assert LogState.objects.get().checkpointed_size == 3


@pytestmark_db
def test_the_signing_key_comes_from_the_audit_key_and_a_stranger_cannot_sign(checkpoints):
    ring = vault.keyring()
    assert transparency.public_bytes(transparency.signing_key(ring.audit_key)) == (
        transparency.public_bytes(transparency.signing_key(ring.audit_key))
    )
    other = transparency.signing_key(vault.Keyring.generate().audit_key)
    assert transparency.public_bytes(other) != transparency.public_bytes(
        transparency.signing_key(ring.audit_key)
    )


@pytestmark_db
def test_the_beat_job_integrates_and_checkpoints(checkpoints):
    write(4)
    tasks.sequence_access_log()
    assert LogState.objects.get().size == 4
    assert transparency.latest_checkpoint().size == 4


@pytestmark_db
@override_settings(PASSAGE_CHECKPOINT_SECONDS=60)
def test_the_beat_job_signs_at_most_once_a_period_and_on_demand_always(checkpoints, monkeypatch):
    """The file grows by one note a minute at most from the beat (not one every 5 s);
    verification and the export still sign the tree they see."""
    write(4)
    tasks.sequence_access_log()
    write(3)
    tasks.sequence_access_log()
    assert LogState.objects.get().size == 7  # integrated
    assert [cp.size for cp in transparency.read_checkpoints()] == [4]  # not signed yet
    later = timezone.now() + datetime.timedelta(seconds=61)
    monkeypatch.setattr(transparency.timezone, "now", lambda: later)
    tasks.sequence_access_log()
    assert [cp.size for cp in transparency.read_checkpoints()] == [4, 7]
    write(1)
    transparency.sequence()  # on demand (verify_audit, the export)
    assert [cp.size for cp in transparency.read_checkpoints()] == [4, 7, 8]


@pytestmark_db
def test_auditors_get_the_newest_checkpoint_by_e_mail_once_a_day(personas, checkpoints):
    personas.auditor.email = "auditor@example.org"
    personas.auditor.save(update_fields=["email"])
    write(2)
    transparency.sequence()
    write(2)
    transparency.sequence()  # a second checkpoint the same day: no second e-mail
    rows = Notification.objects.filter(kind="audit_checkpoint")
    assert [r.recipient for r in rows] == [personas.auditor]
    assert [m.to for m in mail.outbox] == [[personas.auditor.email]]
    body = mail.outbox[0].body
    cp = transparency.read_checkpoints()[0]
    assert f"events (tree size): {cp.size}" in body and cp.root_hex in body
    assert f"/audit/checkpoint.txt?size={cp.size}" in body
