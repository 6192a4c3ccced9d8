import os

from billing.models import UsageRecord
from support import services
from support.models import Ticket
from tests import factories
from tests.billing.factories import UsageRecordFactory


def request_hex() -> str:
    return os.urandom(12).hex()


def usage_record(*, team, owner=None, **kwargs) -> UsageRecord:
    """A failed request made with a key of `owner` (a new member when not given), as the relay records it."""
    key, _ = factories.api_key(team=team, owner=owner)
    defaults = {"request_id": "req_" + request_hex(), "api_key": key, "key_mask": key.mask, "status_code": 401,
                "error_code": "invalid_api_key", "error_text": "Incorrect API key provided.",
                "requested_model": "gpt-4o-mini", "served_model": "", "prompt_tokens": 0, "completion_tokens": 0,
                "cost": 0, "latency_ms": 812, "user_agent": "OpenAI/Python 1.51.0", "sdk": "OpenAI-Python 1.51.0",
                "path": "/v1/chat/completions"}
    return UsageRecordFactory(team=team, **(defaults | kwargs))


def ticket(*, team, opened_by=None, **kwargs) -> Ticket:
    opened_by = opened_by or factories.MembershipFactory(team=team).user
    return services.ticket_open(team=team, opened_by=opened_by, subject=kwargs.pop("subject", "It fails"), **kwargs)
