"""The chain under concurrent writers, on a real PostgreSQL."""

import threading

import pytest
from django.db import connection, connections

from casework import audit
from casework.models import AccessEvent


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
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
    assert list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 91)
    )
    assert audit.verify() == (90, None)


@pytest.mark.django_db
def test_replace_cannot_overwrite_an_event():
    audit.record(None, "test.original")
    from django.db import Error, transaction

    with pytest.raises(Error), transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "INSERT OR REPLACE INTO casework_accessevent (seq, at, action, object_type,"
                " object_id, fields, detail, flagged, request_id, mac) SELECT seq, at,"
                " 'test.forged', object_type, object_id, fields, detail, flagged,"
                " request_id, mac FROM casework_accessevent WHERE seq = 1"
            )
        else:
            cursor.execute(
                "INSERT INTO casework_accessevent SELECT * FROM casework_accessevent"
                " WHERE seq = 1 ON CONFLICT (seq) DO UPDATE SET action = 'test.forged'"
            )
    assert AccessEvent.objects.get(seq=1).action == "test.original"


@pytest.mark.django_db
def test_ipv6_and_odd_detail_keys_keep_the_chain_valid(rf):
    from django.http import HttpResponse

    def serve(remote_addr, action, **kwargs):
        """A request through the middleware: its id and address reach the event."""

        def view(request):
            audit.record(None, action, **kwargs)
            return HttpResponse()

        response = audit.RequestIdMiddleware(view)(rf.get("/", REMOTE_ADDR=remote_addr))
        return response["X-Request-ID"]

    request_id = serve("2001:DB8:0:0:0:0:0:1", "test.ipv6", detail={10: 1, 9: 2})
    serve("1.2.3.4:5678", "test.port")
    event = AccessEvent.objects.get(action="test.ipv6")
    assert (event.ip, event.request_id) == ("2001:db8::1", request_id)
    assert AccessEvent.objects.get(action="test.port").ip is None
    audit.record(None, "test.outside_a_request")  # a job: no request id, no address
    outside = AccessEvent.objects.get(action="test.outside_a_request")
    assert (outside.ip, outside.request_id) == (None, "")
    assert audit.verify() == (3, None)
