from django.urls import path

from routing import health_views

urlpatterns = [
    path("console/t/<slug:team>/status/", health_views.team_status_page, name="console-status"),
    path("console/operator/status/", health_views.platform_status_page, name="operator-status"),
    path("console/t/<slug:team>/health.json", health_views.team_health, name="console-health"),
    path("console/operator/health.json", health_views.platform_health, name="operator-health"),
    path("console/operator/health/channels/<int:pk>.json", health_views.platform_channel_health,
         name="operator-channel-health"),
]
