"""The redaction engine against a fixed set of real key shapes (written out here, not generated from the
engine's own patterns), embedded in JSON, URLs, headers and prose."""
import json

import pytest

from core.redaction import redact

# Fake keys in the real providers' shapes.
OPENAI_PROJECT = "sk-proj-4fJx9QeT2mZr8LwP0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdEFGH_ijkl-mnop"
ANTHROPIC = "sk-ant-api03-Zx81Lq0_pVw9e-RT5yUiOpAsDfGhJkLzXcVbNm1234567890qwertyuiopASDFGHJKLzxcvbnm-AAAA"
OPENROUTER = "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"
GOOGLE = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
LEGACY_OPENAI = "sk-9Vd3kLmN0pQrStUvWxYz1234AbCdEfGhIjKlMnOpQrSt"
TOLLGATE = "sk-tg-Qm9x2Lr8Tn4Vb6Yc1Zd3Fe5Gh7Jk0Pw"
TEAM_SECRET = "corp-internal-9f8e7d6c5b4a"
ALL = [OPENAI_PROJECT, ANTHROPIC, OPENROUTER, GOOGLE, LEGACY_OPENAI, TOLLGATE]


@pytest.mark.parametrize("secret", ALL)
def test_provider_key_shapes_in_every_setting(secret):
    texts = [
        json.dumps({"error": {"message": f"Incorrect API key provided: {secret}"}}),
        f"https://generativelanguage.googleapis.com/v1beta/models/x:generateContent?key={secret}&alt=sse",
        f"Authorization: Bearer {secret}",
        f"x-api-key: {secret}",
        f"I pasted my key {secret} into the config, then it failed.",
    ]
    for text in texts:
        out = redact(text)
        assert secret not in out, out
        assert secret[:12] not in out  # no long prefix survives either
        assert "REDACTED" in out


def test_bearer_token_of_unknown_shape():
    out = redact("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig' https://x")
    assert "eyJhbGciOiJIUzI1NiJ9" not in out


def test_x_api_key_json_field_of_unknown_shape():
    out = redact('{"headers": {"x-api-key": "abc123def456ghi789"}}')
    assert "abc123def456ghi789" not in out


def test_team_secrets_named_by_caller():
    out = redact(f"upstream said: bad credentials {TEAM_SECRET}", extra_secrets=[TEAM_SECRET])
    assert TEAM_SECRET not in out and "[REDACTED" in out


def test_keeps_last_four_for_support_and_leaves_plain_text_alone():
    assert redact(f"key {OPENROUTER}").endswith("e1f0]")
    text = "The model `gpt-4o-mini` does not exist; max_tokens must be <= 4096."
    assert redact(text) == text
