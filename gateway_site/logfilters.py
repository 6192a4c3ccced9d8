"""Logging filters for the console handler (gateway_site/settings.py LOGGING)."""
import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """A 4xx is the client's doing: Django logs a refused request (403 PermissionDenied, 400 BadRequest)
    with the exception's traceback, which reads like a crash in the log. Keep the line, drop the traceback;
    server errors (5xx) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and status is not None and 400 <= status < 500:
            record.exc_info = record.exc_text = None
        return True
