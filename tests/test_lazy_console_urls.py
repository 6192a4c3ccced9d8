"""A worker serving the relay does not load the console, management API and admin views (issue 14, memory):
gateway_site/urls.py reaches them through a lazily imported URL table."""
import os
import subprocess
import sys

from tests.servers import ROOT

PROBE = """
import sys, django
django.setup()
from django.urls import resolve
from gateway_site import asgi  # noqa: F401  the worker's entry point
for path in ("/v1/chat/completions", "/v1/messages", "/api/v1/chat/completions", "/healthz", "/v1/nope"):
    resolve(path)
console = [m for m in ("accounts.views", "support.api", "billing.views", "keys.views", "routing.views")
           if m in sys.modules]
print("relay-only:", console)
resolve("/console/")
print("after a console path:", "gateway_site.console_urls" in sys.modules)
"""


def test_relay_paths_leave_the_console_views_unimported():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gateway_site.settings"}   # the suite's own settings
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "relay-only: []" in out.stdout and "after a console path: True" in out.stdout, out.stdout
