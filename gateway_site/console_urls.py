"""The console, the management API and the admin: the part of the URL table a relay request never reaches.
gateway_site/urls.py imports it on the first path that gets here, so a worker serving only the relay does
not load these views (about 15 MB of a worker's memory, `make bench`)."""
from django.contrib import admin
from django.urls import include, path

from routing.relay import dry_run as relay_dry_run

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("keys.urls")),
    path("", include("billing.urls")),
    path("", include("billing.operator_urls")),
    path("", include("billing.api_urls")),
    path("", include("routing.urls")),
    path("", include("routing.routes_urls")),
    path("", include("routing.aliases_urls")),
    path("", include("billing.import_urls")),
    path("console/t/<slug:team>/routes/try/", relay_dry_run.route_try, name="console-route-try"),
    path("api/teams/<slug:team>/routes/try/", relay_dry_run.RouteTryApi.as_view(), name="api-route-try"),
    path("", include("routing.health_urls")),
    path("", include("support.urls")),
    path("admin/", admin.site.urls),
]
