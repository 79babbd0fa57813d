"""The keyring the database belongs to, and the keyring each process holds (issue 13, item 6)."""
