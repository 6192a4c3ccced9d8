from django.urls import path

from routing import views

urlpatterns = [
    path("console/operator/channels/", views.operator_channels, name="operator-channels"),
    path("console/operator/channels/<int:pk>/", views.operator_channel, name="operator-channel"),
    path("console/operator/channels/<int:pk>/test/", views.operator_channel_test, name="operator-channel-test"),
    # A team's own channels (bring your own key).
    path("console/t/<slug:team>/channels/", views.team_channels, name="console-channels"),
    path("console/t/<slug:team>/channels/<int:pk>/", views.team_channel, name="console-channel-detail"),
    path("console/t/<slug:team>/channels/<int:pk>/test/", views.team_channel_test, name="console-channel-test"),
    path("api/teams/<slug:team>/channels/", views.ChannelListApi.as_view(), name="api-channels"),
    path("api/teams/<slug:team>/channels/<int:pk>/", views.ChannelDetailApi.as_view(), name="api-channel-detail"),
    path("api/teams/<slug:team>/channels/<int:pk>/test/", views.ChannelTestApi.as_view(), name="api-channel-test"),
]
