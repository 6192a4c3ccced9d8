"""`make bench` only: the production settings with the bench's URLconf (the bare relay's path added).

Nothing under gateway_site/ imports bench; bench/run serves bench.asgi with DJANGO_SETTINGS_MODULE=bench.settings.
"""
from gateway_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
