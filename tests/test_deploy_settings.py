"""Production security settings come from the environment (issue 11: `check --deploy` warned four times):
with TOLLGATE_HTTPS=1 and a real SECRET_KEY, `DEBUG=0 manage.py check --deploy` reports nothing, and the
console then redirects to https, sends HSTS and sets secure-only cookies."""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FERNET = "dGVzdC1vbmx5LWZlcm5ldC1rZXktMDAwMDAwMDAwMDA="


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SECURE_", "SESSION_COOKIE", "CSRF_COOKIE", "TOLLGATE_HTTPS", "TOLLGATE_PROXY"))}
    env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), TOLLGATE_ENCRYPTION_KEY=FERNET,
               ALLOWED_HOSTS="gateway.example.com", DJANGO_SETTINGS_MODULE="gateway_site.settings", **extra)
    return env


def _manage(*args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(**extra), capture_output=True,
                          text=True, timeout=120)


def _settings(*names, **extra) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(**extra), capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_tollgate_https():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", TOLLGATE_HTTPS="1")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_without_it_check_deploy_names_what_to_set():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, warning


def test_each_setting_comes_from_the_environment():
    names = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
             "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER")
    assert _settings(*names) == {"SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 0,
                                 "SECURE_HSTS_INCLUDE_SUBDOMAINS": False, "SECURE_HSTS_PRELOAD": False,
                                 "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False,
                                 "SECURE_PROXY_SSL_HEADER": None}
    https = _settings(*names, TOLLGATE_HTTPS="1", SECURE_HSTS_PRELOAD="0",
                      TOLLGATE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO")
    assert https == {"SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31_536_000,
                     "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": False,
                     "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
                     "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}


def test_the_console_redirects_to_https_and_sends_hsts_but_the_relay_is_not_redirected():
    code = """
import django, json
django.setup()
from django.test import Client
client = Client()
plain = client.get("/console/login/", HTTP_HOST="gateway.example.com")
secure = client.get("/console/login/", HTTP_HOST="gateway.example.com", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({"plain": [plain.status_code, plain.get("Location")],
                  "secure": [secure.status_code, secure.get("Strict-Transport-Security"),
                             "secure" in str(secure.cookies.get("csrftoken", "")).lower()]}))
"""
    env = _env(TOLLGATE_HTTPS="1", TOLLGATE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
               DATABASE_URL=os.environ.get("DATABASE_URL", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://gateway.example.com/console/login/"]
    assert seen["secure"] == [200, "max-age=31536000; includeSubDomains; preload", True]
