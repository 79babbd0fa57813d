"""The project's settings with the plain baseline's URLs added (tooling/urls.py).

For the benchmark and the load test only: `DJANGO_SETTINGS_MODULE=tooling.bench_settings`.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tooling.urls"
