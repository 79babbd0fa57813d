"""Logs without personal data: one JSON object a line, with the request id, and request
lines reduced to method, status and view name (paths and query strings can carry words
a visitor typed; bodies are never logged)."""

import contextvars
import json
import logging

request_id_var = contextvars.ContextVar("passage_request_id", default="")
# The client address of the request being served, in canonical form (or None): the
# access log reads it here, so services take an actor and never the HTTP request.
client_ip_var = contextvars.ContextVar("passage_client_ip", default=None)

REQUEST_LOGGERS = {"django.request", "django.server", "django.security.csrf"}


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class RedactRequestFilter(logging.Filter):
    """Request log lines keep what operators need and nothing a visitor wrote."""

    def filter(self, record):
        if record.name in REQUEST_LOGGERS or record.name.startswith("django.security"):
            request = getattr(record, "request", None)
            match = getattr(request, "resolver_match", None) if request is not None else None
            view = match.view_name if match else "unresolved"
            method = getattr(request, "method", "") if request is not None else ""
            status = getattr(record, "status_code", "")
            record.msg = f"{record.levelname.lower()} {method} {view} {status}".strip()
            record.args = ()
            record.exc_text = None
            if record.exc_info:
                # Keep the exception type and where it happened; drop values (locals
                # and messages can hold personal data).
                exc_type, _exc, tb = record.exc_info
                record.msg += f" {exc_type.__name__} at {_origin(tb)}"
                record.exc_info = None
        return True


def _origin(tb) -> str:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "request_id", ""):
            entry["request_id"] = record.request_id
        if record.exc_info:
            exc_type = record.exc_info[0]
            entry["error"] = f"{exc_type.__name__} at {_origin(record.exc_info[2])}"
        return json.dumps(entry, ensure_ascii=False)
