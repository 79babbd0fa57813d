"""The project's URLs and, under /plain/, the plain-Django baseline (tooling/plain.py).

Used only by the benchmark and the load test (ROOT_URLCONF in tooling/bench_settings.py),
so Passage's pages and the baseline's go through one URL resolver, one middleware stack
and one gunicorn.
"""

from django.urls import include, path

from config.urls import handler400
from config.urls import urlpatterns as passage

from . import plain

urlpatterns = [*passage, path("plain/", include(plain.urlpatterns))]

__all__ = ["handler400", "urlpatterns"]
