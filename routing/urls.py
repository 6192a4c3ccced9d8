from django.urls import path

from routing import views

urlpatterns = [
    path("console/operator/channels/", views.operator_channels, name="operator-channels"),
    path("console/operator/channels/<int:pk>/", views.operator_channel, name="operator-channel"),
]
