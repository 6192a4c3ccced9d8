"""`make bench` only: the production URLconf plus the bare relay Tollgate is measured against."""
from django.urls import path

from bench.bare_relay import bare_chat_completions
from gateway_site.urls import handler400, handler404, handler500
from gateway_site.urls import urlpatterns as production_urlpatterns

urlpatterns = [path("bare/v1/chat/completions", bare_chat_completions), *production_urlpatterns]

__all__ = ["handler400", "handler404", "handler500", "urlpatterns"]
