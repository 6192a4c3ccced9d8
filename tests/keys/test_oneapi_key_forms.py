"""A key moved in from One API / New API (issue 13) is imported as `sk-` + its 48 characters; its clients may
still send it as those gateways accepted it: the bare key, or with a channel pin after it (`sk-KEY-3`). Those
forms reach the same key (the pin is ignored: Tollgate routes by itself); nothing else is widened."""
import secrets

import httpx
import pytest

from keys import auth
from tests.conftest import make_live_setup

KEY = secrets.token_hex(24)   # One API's tokens: 48 characters


@pytest.mark.parametrize("sent, imported", [
    (KEY, "sk-" + KEY), ("sk-" + KEY + "-3", "sk-" + KEY), (KEY + "-12", "sk-" + KEY),
    ("sk-" + KEY, None),                     # already the imported form
    ("sk-" + KEY + "-x", None),              # a pin is a channel id
    ("sk-" + KEY[:47] + "-3", None),         # not a One API key
    ("sk-tg-" + KEY, None),                  # a Tollgate key
    (KEY[:40] + "é" * 8, None),
])
def test_the_forms_one_api_accepted(sent, imported):
    assert auth.oneapi_form(sent) == imported


def test_an_imported_key_sent_as_one_api_accepted_it_works(transactional_db, gateway, simulator):
    live = make_live_setup(gateway, simulator, secret="sk-" + KEY)

    def chat(secret):
        return httpx.post(f"{live.base_url}/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})

    for sent in ("sk-" + KEY, KEY, f"sk-{KEY}-3", f"{KEY}-7"):
        r = chat(sent)
        assert r.status_code == 200, (sent, r.text)
    for refused in (f"sk-{KEY}-x", KEY[:47], "sk-" + KEY[::-1]):
        r = chat(refused)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (refused, r.text)
