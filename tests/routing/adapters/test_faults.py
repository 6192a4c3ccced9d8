"""Faults from the simulated upstream, in each provider's own error shape, as each adapter reads them."""
import aiohttp
import pytest

from routing.adapters.base import UpstreamFormatError
from tests.routing.adapters import test_anthropic_adapter as anthropic_tests
from tests.routing.adapters import test_gemini_adapter as gemini_tests
from tests.routing.adapters.exchange import call

ANTHROPIC = (anthropic_tests.ADAPTER, anthropic_tests.MODEL)
GEMINI = (gemini_tests.ADAPTER, gemini_tests.MODEL)


def user(text="hi"):
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("provider, fault, status, code", [
    (ANTHROPIC, "status:503", 503, "api_error"), (ANTHROPIC, "status:529", 529, "overloaded_error"),
    (ANTHROPIC, "context_length", 400, "context_length_exceeded"), (ANTHROPIC, "quota", 400, "billing_error"),
    (GEMINI, "status:503", 503, "UNAVAILABLE"), (GEMINI, "quota", 429, "RESOURCE_EXHAUSTED"),
    (GEMINI, "context_length", 400, "context_length_exceeded"), (GEMINI, "model_not_found", 404, "NOT_FOUND"),
])
def test_live_faults_give_error_codes(sim, provider, fault, status, code):
    adapter, model = provider
    result = call(adapter, sim, user(f"hi [[sim:fault={fault}]]"), model=model)
    assert result.status == status
    message, got, _ = adapter.error_detail(result.status, result.body)
    assert got == code and message


@pytest.mark.parametrize("provider, status, code", [(ANTHROPIC, 401, "authentication_error"),
                                                    (GEMINI, 400, "API_KEY_INVALID")])
def test_live_invalid_key(sim, provider, status, code):
    adapter, model = provider
    result = call(adapter, sim, user(), model=model, key="sk-sim-invalid")
    assert result.status == status and adapter.error_detail(status, result.body)[1] == code


@pytest.mark.parametrize("provider, error_type", [(ANTHROPIC, "overloaded_error"), (GEMINI, "INTERNAL")])
def test_live_broken_and_erroring_streams(sim, provider, error_type):
    adapter, model = provider
    with pytest.raises((UpstreamFormatError, aiohttp.ClientPayloadError)):
        call(adapter, sim, user("hi [[sim:fault=break:2]]"), model=model, stream=True)
    result = call(adapter, sim, user("hi [[sim:fault=stream_error:3]]"), model=model, stream=True)
    assert [e.type for e in result.errors()] == [error_type]
