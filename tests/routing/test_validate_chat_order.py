"""validate_chat checks only the top-level fields a body has (issue 14), in a fixed order: of several bad
fields the first in that order is the one named, whichever order the body lists them in."""
import pytest

from routing.relay import errors
from routing.relay.formats.openai import validate_chat

MESSAGES = [{"role": "user", "content": "hi"}]
# One bad value per field, in validate_chat's order.
BAD = [("stream", "yes"), ("models", "m"), ("temperature", "hot"), ("max_tokens", 0), ("seed", 2 ** 64),
       ("metadata", []), ("user", 1), ("logprobs", "no"), ("stream_options", {"include_usage": 1}),
       ("stop", 5), ("tools", {}), ("tool_choice", 3)]
NAMED = {"stream_options": "stream_options.include_usage"}


def _named(body: dict) -> str | None:
    with pytest.raises(errors.RelayError) as raised:
        validate_chat(body)
    assert raised.value.status == 400
    return raised.value.param


@pytest.mark.parametrize("i", range(len(BAD) - 1))
def test_the_first_bad_field_in_order_is_named_whatever_the_body_order(i):
    first, later = BAD[i], BAD[i + 1:]
    body = {"messages": MESSAGES, **dict(reversed(later)), first[0]: first[1]}
    assert _named(body) == NAMED.get(first[0], first[0])


def test_each_bad_field_alone_is_named_and_a_null_one_passes():
    for key, value in BAD:
        assert _named({"messages": MESSAGES, key: value}) == NAMED.get(key, key)
    nulls = {key: None for key, _ in BAD if key != "stream"}
    assert validate_chat({"messages": MESSAGES, **nulls})["messages"] == MESSAGES
    assert _named({"messages": MESSAGES, "stream": None}) == "stream"
