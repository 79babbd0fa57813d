import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Refuse to serve without a usable keyring, or with one that is not this database's:
# better no site than pages that fail later, or records no one can read.
from casework import vault  # noqa: E402
from casework.vault import registry  # noqa: E402

vault.keyring()
# Follow the key file while running and tell `keyring add` and `retire_key` which ring
# this process holds.
registry.start_reporter("web")
