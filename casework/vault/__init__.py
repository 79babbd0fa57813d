"""The vault: envelope encryption of personal data, blind indexes, rotation, shredding.

1. Keys. Key-encryption keys (KEKs) live in the keyring, outside the database. Every
   owner of personal data (a case, a family request) has its own random 256-bit data
   key (DEK), stored in a `DataKey` row wrapped by a KEK with AES-GCM.
2. Fields. An encrypted field stores version byte + nonce + AES-256-GCM ciphertext
   under the owner's DEK. The associated data binds table, field and the row's UUID,
   so a ciphertext copied to another row or field fails. Any failure raises
   `DecryptionError`; nothing returns ciphertext or a blank instead.
3. Search. Blind indexes: HMAC-SHA256 of a normalised value under a per-index key
   (HKDF from the index root key), truncated to a planned number of bits, in an
   indexed column. A search filters on the index, then decrypts and confirms.
4. Rotation re-wraps DEKs under the active KEK; data is never re-encrypted.
5. Shredding destroys the wrapped DEK: the record can no longer be read with any key.

The keyring lives outside the database (a file named by PASSAGE_KEYRING, mode 0600,
or the same JSON in the PASSAGE_KEYRING_JSON environment variable):

    {"version": 1,
     "keks": [{"id": "...", "key": "<base64, 32 bytes>"}, ...],   # first is active
     "index_key": "<base64, 32 bytes>",   # root of the blind-index keys
     "audit_key": "<base64, 32 bytes>"}   # HMAC chain of the access log

The package, by topic (each module imports only from those above it):

    keys     the keyring; wrapping and unwrapping of data keys
    records  value encryption, data-key owners, shredding
    fields   the encrypted model fields and VaultQuerySet
    index    normalisation, blind indexes, search, VaultModel
    files    encrypted files
    upkeep   rotation, re-indexing, key usage
    registry the keyring the database belongs to, and the one each process holds
             (models; imported by casework.models, not here)

Use it through the package (`from casework import vault`, then `vault.search(...)`):
every name below is re-exported here.
"""

import sys
import types

from . import keys
from .fields import (
    EncryptedBinaryField,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedFieldError,
    EncryptedJSONField,
    EncryptedMixin,
    EncryptedTextField,
    VaultManager,
    VaultQuerySet,
    encrypted_field_names,
)
from .fields import _Plaintext as _Plaintext
from .fields import _refers_to_encrypted as _refers_to_encrypted
from .files import _file_aad as _file_aad
from .files import _file_path as _file_path
from .files import delete_file, open_file, save_file
from .index import _APOSTROPHES as _APOSTROPHES
from .index import _CHAR_MAP as _CHAR_MAP
from .index import _SEPARATORS as _SEPARATORS
from .index import (
    BlindIndex,
    VaultModel,
    blind_indexes,
    candidate_ids,
    normalise,
    normalise_email,
    normalise_phone,
    plan_bits,
    search,
    tokens,
    update_blind_indexes,
)
from .keys import (
    KEY_BYTES,
    NONCE_BYTES,
    DecryptionError,
    Keyring,
    KeyringError,
    KeyringMismatch,
    check_value,
    fingerprint,
    keyring,
    load_keyring,
    new_kek_id,
    reset_keyring,
    save_keyring,
    unwrap_dek,
    use_keyring,
    wrap_dek,
    write_keyring,
)
from .keys import _b64 as _b64
from .keys import _dek_aad as _dek_aad
from .keys import _unb64 as _unb64
from .records import (
    VERSION,
    DataKeyOwner,
    Shredded,
    decrypt,
    encrypt,
    field_aad,
    owner_data_key,
    shred,
)
from .records import _shredded as _shredded
from .upkeep import indexed_models, key_usage, reindex, rotate

__all__ = [
    # keys
    "KEY_BYTES",
    "NONCE_BYTES",
    "DecryptionError",
    "Keyring",
    "KeyringError",
    "KeyringMismatch",
    "check_value",
    "fingerprint",
    "keyring",
    "load_keyring",
    "new_kek_id",
    "reset_keyring",
    "save_keyring",
    "unwrap_dek",
    "use_keyring",
    "wrap_dek",
    "write_keyring",
    # records
    "VERSION",
    "DataKeyOwner",
    "Shredded",
    "decrypt",
    "encrypt",
    "field_aad",
    "owner_data_key",
    "shred",
    # fields
    "EncryptedBinaryField",
    "EncryptedCharField",
    "EncryptedDateField",
    "EncryptedFieldError",
    "EncryptedJSONField",
    "EncryptedMixin",
    "EncryptedTextField",
    "VaultManager",
    "VaultQuerySet",
    "encrypted_field_names",
    # index
    "BlindIndex",
    "VaultModel",
    "blind_indexes",
    "candidate_ids",
    "normalise",
    "normalise_email",
    "normalise_phone",
    "plan_bits",
    "search",
    "tokens",
    "update_blind_indexes",
    # files
    "delete_file",
    "open_file",
    "save_file",
    # upkeep
    "indexed_models",
    "key_usage",
    "reindex",
    "rotate",
]


class _Vault(types.ModuleType):
    """The package, with `_keyring_cache` handed through to the one in keys.py.

    keys.keyring() reads and fills keys._keyring_cache; tests and the benchmark swap
    the keyring in use by assigning `vault._keyring_cache`, which goes through
    keys.use_keyring(): the ring assigned becomes the database's keyring too.
    """

    @property
    def _keyring_cache(self):
        return keys._keyring_cache

    @_keyring_cache.setter
    def _keyring_cache(self, ring):
        keys.use_keyring(ring)


sys.modules[__name__].__class__ = _Vault
