"""Tokenizer, generated content and fault grammar, without a server."""

import pytest

from simulator import content, core, faults
from simulator.tokens import count_tokens, pieces


def test_count_tokens_words_punctuation_and_cjk():
    # The real o200k_base tokenizer (routing/tokens.py): what OpenAI reports for the same text.
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("don't stop") == 2
    assert count_tokens("你好 world") == 2
    assert count_tokens("   ") == 1 and count_tokens("") == 0


@pytest.mark.parametrize("text", ["Hello, world!  ", " lead and trail ", "a\n\nb", "", "{\"a\":[1,2]}"])
def test_pieces_are_one_token_each_and_join_back(text):
    parts = pieces(text)
    assert "".join(parts) == text
    assert all(count_tokens(p) == 1 for p in parts if p.strip())


@pytest.mark.parametrize("n", [0, 1, 4, 12, 50])
def test_reply_has_exactly_n_tokens_and_no_directives(n):
    text = content.reply_text("Tell me [[sim:tokens=9]] a story about a dragon, please", n)
    assert count_tokens(text) == n and "[[" not in text
    assert content.reply_text("Tell me a story") == "Simulated reply to: Tell me a story lorem ipsum dolor"


def test_sample_follows_the_schema():
    schema = {"type": "object", "required": ["a", "b", "c", "d", "e"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "array", "items": {"type": "number"}},
        "d": {"type": "object", "properties": {"x": {"type": ["null", "boolean"]}}},
        "e": {"anyOf": [{"enum": ["red", "blue"]}]}, "ignored": {"type": "string"}}}
    assert content.sample(schema) == {"a": "sample_a", "b": 1, "c": [1.5], "d": {"x": True}, "e": "red"}


def test_embedding_is_deterministic():
    assert content.embedding("x", 8) == content.embedding("x", 8) != content.embedding("y", 8)
    assert len(content.embedding("x", 100)) == 100


def test_fault_grammar():
    assert faults.parse("status:503, delay:10,timeout") == (
        faults.Fault("status", 503), faults.Fault("delay", 10), faults.Fault("timeout", 120))
    plan = faults.Plan(faults.parse("delay:250,timeout:2,break:3,status:429"))
    assert plan.wait == 2.25 and plan.error == ("status", 429) and plan.output == ("break", 3)
    for bad in ("nope", "status", "status:abc", "status:302", "delay"):
        with pytest.raises(ValueError):
            faults.parse(bad)


def test_script_counts_down_per_key():
    script = faults.Script()
    script.add("k1", "status:500", 2)
    script.add("*", "empty", None)
    assert [script.take("k1")[0].kind for _ in range(3)] == ["status", "status", "empty"]
    assert script.take("k2") == (faults.Fault("empty"),)
    script.clear("*")
    assert script.take("k1") == () and script.rules == []
    with pytest.raises(ValueError):
        script.add("k", "status:500", 0)


def test_say_cuts_at_the_earliest_stop_then_filters_then_limits():
    out = core.say("one two three four five", core.DEFAULT_OPTIONS, stops=["four", "two", ""])
    assert (out.pieces, out.finish, out.stop) == (["one", " "], "stop_sequence", "two")
    out = core.say("one two three four five", core.DEFAULT_OPTIONS, limit=2)
    assert (out.pieces, out.finish, out.stop) == (["one", " two"], "length", None)
    filtered = core.Options(content_filter=True)
    assert core.say("one two three four", filtered, stops=["four"]).finish == "filter"


def test_schema_nodes_normalize_protobuf_json_and_report_paths():
    item = core.Obj({"maxTokens": core.integer(1, 8), "tags": core.ListOf(core.STRING)}, ("maxTokens",), proto=True)
    node = core.Obj({"items": core.ListOf(item), "kind": core.nullable(core.enum("a", "b"))})
    assert node({"items": [{"max_tokens": 2, "tags": None}], "kind": None}, ()) == {
        "items": [{"maxTokens": 2}], "kind": None}
    for value, kind, path in [
        ({"items": [{"maxTokens": 9}]}, "max", ("items", 0, "max_tokens")),
        ({"items": [{"maxTokens": True}]}, "type", ("items", 0, "max_tokens")),
        ({"items": [{"tags": ["x", 1]}]}, "type", ("items", 0, "tags", 1)),
        ({"items": [{}]}, "missing", ("items", 0)),
        ({"items": [{"maxTokens": 1, "colour": 1}]}, "extra", ("items", 0)),
        ({"kind": "c"}, "enum", ("kind",)),
        ({"other": 1}, "extra", ()),
    ]:
        with pytest.raises(core.Invalid) as e:
            node(value, ())
        assert (e.value.kind, e.value.path) == (kind, path), value
    tagged = core.Tagged({"text": core.Obj({"text": core.STRING}, ("text",))}, default="text")
    assert tagged({"text": "hi"}, ()) == {"text": "hi"}
    with pytest.raises(core.Invalid) as e:
        tagged({"type": "text", "text": 1}, ("content", 0))
    assert e.value.path == ("content", 0, "text", "text")
    assert (core.camel("max_output_tokens"), core.snake("maxOutputTokens")) == ("maxOutputTokens", "max_output_tokens")
    assert core.is_base64("iVBORw0KGgo=") and core.is_base64("c2ln") and not core.is_base64("data:image/png;base64,AA")
