import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Refuse to serve without a usable keyring: better no site than pages that fail later.
from casework import vault  # noqa: E402

vault.keyring()
