"""Sample models for the vault's tests: one field of each encrypted kind, a child row."""

from django.db import models

from casework import vault


class Person(vault.DataKeyOwner, vault.VaultModel):
    vault_purpose = "vaulttest"

    name = vault.EncryptedCharField(max_length=200)
    aliases = vault.EncryptedJSONField()
    story = vault.EncryptedTextField()
    born = vault.EncryptedDateField()
    photo = vault.EncryptedBinaryField()
    extra = vault.EncryptedJSONField()
    label = models.CharField(max_length=20, blank=True)

    blind_indexes = [vault.BlindIndex("vaulttest.names", ("name", "aliases"), rows=100_000)]

    def __str__(self):
        return self.label


class Diary(vault.VaultModel):
    vault_owner = "person"

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="diary")
    entry = vault.EncryptedTextField()

    def __str__(self):
        return "diary"
