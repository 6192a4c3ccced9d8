from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from support import api, views

T = "console/t/<slug:team>/tickets/"
S = "console/support/"
A = "api/teams/<slug:team>/"

urlpatterns = [
    # The team's tickets.
    path(T, views.ticket_list, name="console-tickets"),
    path(T + "new/", views.ticket_new, name="console-ticket-new"),
    path(T + "<int:pk>/", views.ticket_detail, name="console-ticket"),
    path(T + "<int:pk>/close/", views.ticket_close, name="console-ticket-close"),
    # The support staff queue (all teams).
    path(S, views.queue, name="support-queue"),
    path(S + "tickets/<int:pk>/", views.staff_ticket, name="support-ticket"),
    path(S + "tickets/<int:pk>/reply/", views.staff_reply, name="support-ticket-reply"),
    path(S + "tickets/<int:pk>/note/", views.staff_note, name="support-ticket-note"),
    path(S + "tickets/<int:pk>/status/", views.staff_status, name="support-ticket-status"),
    path(S + "tickets/<int:pk>/assign/", views.staff_assign, name="support-ticket-assign"),
    # Management API.
    path(A + "usage/", api.UsageListApi.as_view(), name="api-usage"),
    path(A + "usage/<str:pk>/", api.UsageDetailApi.as_view(), name="api-usage-detail"),
    path(A + "tickets/", api.TicketListApi.as_view(), name="api-tickets"),
    path(A + "tickets/<int:pk>/", api.TicketDetailApi.as_view(), name="api-ticket-detail"),
    path(A + "tickets/<int:pk>/replies/", api.TicketReplyApi.as_view(), name="api-ticket-replies"),
    path(A + "tickets/<int:pk>/close/", api.TicketCloseApi.as_view(), name="api-ticket-close"),
    path("api/tokens/", api.TokenListApi.as_view(), name="api-tokens"),
    path("api/tokens/<int:pk>/", api.TokenDetailApi.as_view(), name="api-token-detail"),
    # OpenAPI schema and its docs page (Swagger UI from drf-spectacular-sidecar: served locally, no CDN).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
