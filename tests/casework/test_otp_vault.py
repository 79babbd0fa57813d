"""Authenticator seeds sealed under the vault (issue 12, item 9; SECURITY.md 1, 2, 8, 23).

A database dump must not be enough to compute anyone's codes: the seed is in no column
as bytes, hex or base32; a sealed seed moved to another row or account fails; a code
is accepted once; the migration seals django-otp's plain rows.
"""

import base64
import importlib
import secrets
import time

import pytest
from django.apps import apps as global_apps
from django.db import connection
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from casework import otp, staff, vault
from casework.models import DataKey, VaultTOTPDevice
from tests.base import make_user, totp_now

pytestmark = pytest.mark.django_db

migration = importlib.import_module("casework.migrations.0012_vault_totp")


def code_for(key: bytes, at: float, step=30) -> str:
    totp = TOTP(key, step, 0, 6, 0)
    totp.time = at
    return f"{totp.token():06d}"


def spellings(seed: bytes) -> list[bytes]:
    b32 = base64.b32encode(seed)
    return [seed, seed.hex().encode(), seed.hex().upper().encode(), b32, b32.rstrip(b"=")]


def raw_database_bytes() -> bytes:
    """Every column of every row of the tables that hold second-factor state."""
    found = []
    with connection.cursor() as cursor:
        for table in ["casework_vaulttotpdevice", "casework_datakey", "otp_totp_totpdevice"]:
            cursor.execute(f"SELECT * FROM {table}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        found.append(bytes(value))
                    elif value is not None:
                        found.append(str(value).encode())
    return b"\x00".join(found)


@pytest.fixture
def frozen(monkeypatch):
    """Fix the clock (mid-step, so an offset of one step is exactly one step)."""
    now = [1_800_000_015.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_the_seed_is_in_no_column_as_bytes_hex_or_base32():
    user = make_user("sam")
    device = VaultTOTPDevice.objects.get(user=user)
    seed = device.bin_key
    assert len(seed) == otp.SEED_BYTES
    dump = raw_database_bytes()
    assert dump  # the tables were read
    for spelling in spellings(seed):
        assert spelling not in dump
    assert not TOTPDevice.objects.exists()


def test_the_enrolment_qr_carries_the_seed_the_device_verifies():
    user = make_user("sam")
    device = VaultTOTPDevice.objects.get(user=user)
    secret = base64.b32encode(device.bin_key).decode()
    assert f"secret={secret}" in device.config_url
    assert device.config_url.startswith("otpauth://totp/Passage%3Asam?")
    assert VaultTOTPDevice.objects.get(pk=device.pk).verify_token(totp_now(user))


def test_a_seed_moved_to_another_row_fails_to_verify():
    alice, bob = make_user("alice"), make_user("bob")
    alice_device = VaultTOTPDevice.objects.get(user=alice)
    VaultTOTPDevice.objects.filter(user=bob).update(seed=alice_device.seed)
    moved = VaultTOTPDevice.objects.get(user=bob)
    with pytest.raises(vault.DecryptionError):
        moved.verify_token(totp_now(alice))
    with pytest.raises(vault.DecryptionError):
        moved.config_url


def test_a_device_moved_to_another_account_fails_to_verify():
    alice, mallory = make_user("alice"), make_user("mallory", device=False)
    code = totp_now(alice)
    VaultTOTPDevice.objects.filter(user=alice).update(user=mallory)
    with pytest.raises(vault.DecryptionError):
        VaultTOTPDevice.objects.get(user=mallory).verify_token(code)


def test_a_flipped_bit_fails_closed():
    user = make_user("sam")
    device = VaultTOTPDevice.objects.get(user=user)
    blob = bytearray(device.seed)
    blob[-1] ^= 1
    VaultTOTPDevice.objects.filter(pk=device.pk).update(seed=bytes(blob))
    with pytest.raises(vault.DecryptionError):
        VaultTOTPDevice.objects.get(pk=device.pk).bin_key


def test_a_code_verifies_once_and_not_twice(frozen):
    user = make_user("sam")
    code = totp_now(user)
    assert VaultTOTPDevice.objects.get(user=user).verify_token(code)
    assert not VaultTOTPDevice.objects.get(user=user).verify_token(code)
    # The refusal counted as a failure; lift the throttle to try the next step's code.
    VaultTOTPDevice.objects.filter(user=user).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    frozen[0] += 30
    assert VaultTOTPDevice.objects.get(user=user).verify_token(totp_now(user))


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_within_the_tolerance_verify(frozen, offset):
    user = make_user("sam")
    assert VaultTOTPDevice.objects.get(user=user).verify_token(totp_now(user, offset))


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_outside_the_tolerance_are_refused(frozen, offset):
    user = make_user("sam")
    device = VaultTOTPDevice.objects.get(user=user)
    assert not device.verify_token(totp_now(user, offset))
    assert VaultTOTPDevice.objects.get(pk=device.pk).throttling_failure_count == 1


def test_an_older_code_is_refused_after_a_newer_one(frozen):
    user = make_user("sam")
    older, newer = totp_now(user, -1), totp_now(user, 1)
    assert VaultTOTPDevice.objects.get(user=user).verify_token(newer)
    assert not VaultTOTPDevice.objects.get(user=user).verify_token(older)


def test_a_second_factor_reset_deletes_the_devices_and_their_data_keys(personas):
    device = VaultTOTPDevice.objects.get(user=personas.caseworker)
    key_id = device.data_key_id
    staff.second_factor_reset(actor=personas.administrator, user=personas.caseworker)
    assert not VaultTOTPDevice.objects.filter(user=personas.caseworker).exists()
    assert not DataKey.objects.filter(pk=key_id).exists()


def test_a_queryset_delete_takes_the_data_keys_too():
    users = [make_user(f"u{i}") for i in range(3)]
    keys = list(VaultTOTPDevice.objects.values_list("data_key_id", flat=True))
    VaultTOTPDevice.objects.filter(user__in=users[:2]).delete()
    assert DataKey.objects.filter(pk__in=keys).count() == 1


def test_seeds_survive_kek_rotation_and_retirement(frozen):
    user = make_user("sam")
    code = totp_now(user)
    old = vault.keyring()
    new_kek = {vault.new_kek_id(): secrets.token_bytes(vault.KEY_BYTES)}
    try:
        vault._keyring_cache = vault.Keyring(
            keks={**new_kek, **old.keks}, index_key=old.index_key, audit_key=old.audit_key
        )
        assert vault.rotate() >= 1
        vault._keyring_cache = vault.Keyring(
            keks=new_kek, index_key=old.index_key, audit_key=old.audit_key
        )
        assert VaultTOTPDevice.objects.get(user=user).verify_token(code)
    finally:
        vault._keyring_cache = old


def test_the_migration_seals_a_plain_device_and_deletes_it():
    user = make_user("sam", device=False)
    seed = secrets.token_bytes(20)
    plain = TOTPDevice.objects.create(
        user=user, name="phone", key=seed.hex(), confirmed=True, last_t=12, drift=1
    )
    migration.seal_plain_devices(global_apps, None)
    assert not TOTPDevice.objects.filter(pk=plain.pk).exists()
    sealed = VaultTOTPDevice.objects.get(user=user)
    assert (sealed.name, sealed.confirmed, sealed.last_t, sealed.drift) == ("phone", True, 12, 1)
    assert sealed.bin_key == seed
    assert sealed.created_at == plain.created_at
    for spelling in spellings(seed):
        assert spelling not in raw_database_bytes()
    now = time.time()
    sealed.drift = 0
    assert sealed.verify_token(code_for(seed, now))


def test_the_migration_without_a_keyring_stops_with_a_clear_message(monkeypatch):
    user = make_user("sam", device=False)
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

    def missing():
        raise vault.KeyringError("No keyring configured.")

    monkeypatch.setattr(vault, "keyring", missing)
    with pytest.raises(vault.KeyringError, match="0012_vault_totp encrypts the existing TOTP"):
        migration.seal_plain_devices(global_apps, None)
    assert TOTPDevice.objects.filter(user=user).exists()
    assert not VaultTOTPDevice.objects.filter(user=user).exists()


def test_undoing_the_migration_gives_back_the_same_seed():
    user = make_user("sam")
    seed = VaultTOTPDevice.objects.get(user=user).bin_key
    migration.unseal_devices(global_apps, None)
    assert bytes.fromhex(TOTPDevice.objects.get(user=user).key) == seed
    assert not VaultTOTPDevice.objects.exists()


def test_administrators_may_list_authenticators_after_migrate():
    from django.contrib.auth.models import Group

    codenames = set(
        Group.objects.get(name="administrator").permissions.values_list("codename", flat=True)
    )
    assert {"view_vaulttotpdevice", "delete_vaulttotpdevice"} <= codenames
