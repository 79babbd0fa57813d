"""The plain baseline's background job, run by the Celery worker during a load test."""

from celery import shared_task


@shared_task(acks_late=True)
def plain_process_request(request_id: str) -> None:
    """Screening and matching of a plain family request (tooling/plain.py)."""
    from . import plain  # imported here: the plain tables exist only where the tools made them

    plain.process(request_id)
