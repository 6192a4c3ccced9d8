"""Every user-visible string is translated: the zh-Hans catalog has no missing or fuzzy entry (checked against a
fresh `makemessages` run, so a string marked but never translated fails too), and no template shows text
that is not marked for translation."""
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"

# Words a template may show as they are in every language: names, protocols, formats.
UNTRANSLATED_WORDS = {
    "Tollgate", "OpenAI", "Anthropic", "Gemini", "DeepSeek", "Claude", "Code", "Codex", "CLI", "SDK", "API",
    "curl", "Python", "JSON", "CSV", "URL", "ID", "IP", "UTC", "ms", "req", "chatcmpl", "sk", "tg", "TG",
    "rpm", "tpm", "p50", "p95", "BYOK", "English", "OK", "vs", "SSE",
}


def _entries(po_text: str):
    """(flags, msgid, msgstrs) of each entry of a .po file, header and obsolete entries left out."""
    for block in po_text.split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith("#~")]
        if not any(line.startswith("msgid ") for line in lines):
            continue
        flags = " ".join(line for line in lines if line.startswith("#,"))
        fields: dict[str, str] = {}
        current = None
        for line in lines:
            match = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d+\])?|msgctxt) "(.*)"$', line)
            if match:
                current = match.group(1)
                fields[current] = match.group(2)
            elif line.startswith('"') and current:
                fields[current] += line[1:-1]
        if fields.get("msgid", "") == "":
            continue  # the header
        yield flags, fields["msgid"], [v for k, v in fields.items() if k.startswith("msgstr")]


def _copy_sources(target: Path) -> None:
    """The code and templates makemessages reads (makemessages writes next to the sources it finds, so it runs
    on a copy: the committed catalog is never touched by a test)."""
    skip = shutil.ignore_patterns(".*", "__pycache__", "var", "staticfiles", "node_modules", "docs", "*.sqlite3")
    for name in ("accounts", "keys", "routing", "billing", "support", "gateway_site", "templates", "locale"):
        shutil.copytree(ROOT / name, target / name, ignore=skip)
    shutil.copy(ROOT / "manage.py", target / "manage.py")


@pytest.fixture(scope="module")
def fresh_catalog(tmp_path_factory):
    """The committed catalog merged with every string the code and templates mark today."""
    copy = tmp_path_factory.mktemp("sources")
    _copy_sources(copy)
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:", "REDIS_URL": ""}
    subprocess.run([sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete", "-v", "0"],
                   cwd=copy, env=env, check=True, capture_output=True, timeout=120)
    return (copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po").read_text()


def test_every_marked_string_is_translated_and_none_is_fuzzy(fresh_catalog):
    missing = [msgid for flags, msgid, msgstrs in _entries(fresh_catalog)
               if "fuzzy" in flags or not msgstrs or any(not s for s in msgstrs)]
    assert not missing, f"{len(missing)} strings lack a zh-Hans translation (or are fuzzy): {missing[:20]}"


def _catalog(mo: Path) -> dict:
    with open(mo, "rb") as compiled:
        return gettext.GNUTranslations(compiled)._catalog


def test_the_committed_catalog_is_compiled(tmp_path):
    """The .mo the server reads says what the .po says (`manage.py compilemessages` after every edit)."""
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(CATALOG)], check=True, timeout=60)
    assert _catalog(CATALOG.with_suffix(".mo")) == _catalog(fresh), "run `manage.py compilemessages`"


_DROP = [
    re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", re.S),
    re.compile(r"{#.*?#}", re.S),
    re.compile(r"{%\s*blocktranslate\b.*?{%\s*endblocktranslate\s*%}", re.S),
    re.compile(r"<(script|style|code|pre|kbd|samp)\b.*?</\1>", re.S | re.I),
]
_TAG_OR_VAR = re.compile(r"{%.*?%}|{{.*?}}", re.S)
_ATTR = re.compile(r'\b(?:title|placeholder|aria-label|alt)="([^"]*)"', re.I)
_HTML = re.compile(r"<[^>]*>", re.S)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]+")


def unmarked_text(source: str) -> list[str]:
    for pattern in _DROP:
        source = pattern.sub(" ", source)
    source = _TAG_OR_VAR.sub(" ", source)
    found = [value for value in _ATTR.findall(source)]
    found += _HTML.sub("\n", source).splitlines()
    return [text.strip() for text in found
            if any(word not in UNTRANSLATED_WORDS for word in _WORD.findall(text))]


def test_the_checker_finds_unmarked_text():
    assert unmarked_text('<p>Hello <b>{{ name }}</b></p>') == ["Hello"]
    assert unmarked_text('<input placeholder="Search keys">') == ["Search keys"]
    assert unmarked_text('<p>{% translate "Hello" %} · <code>curl -H x</code> {{ x }}</p>') == []
    assert unmarked_text('{% blocktranslate %}Hi {{ who }}{% endblocktranslate %} OpenAI SDK') == []


TEMPLATES = sorted(p for p in (ROOT / "templates").rglob("*.html"))


@pytest.mark.parametrize("path", TEMPLATES, ids=[str(p.relative_to(ROOT / "templates")) for p in TEMPLATES])
def test_templates_mark_their_text_for_translation(path):
    assert unmarked_text(path.read_text()) == [], f"{path.name}: text not marked for translation"
