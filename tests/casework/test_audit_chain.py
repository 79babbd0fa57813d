"""The chain under concurrent writers, on a real PostgreSQL."""

import threading

import pytest
from django.db import connection, connections

from casework import audit
from casework.models import AccessEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_threads_writing_at_once_leave_one_valid_chain():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need a server database (CI runs this on PostgreSQL)")
    errors = []

    def writer(n):
        try:
            for i in range(15):
                audit.record(None, "test.concurrent", detail={"writer": n, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AccessEvent.objects.count() == 90
    assert list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 91))
    assert audit.verify() == (90, None)
