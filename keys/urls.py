from django.urls import path

from keys import views

urlpatterns = [
    path("console/t/<slug:team>/keys/", views.key_list, name="console-keys"),
    path("console/t/<slug:team>/keys/<int:pk>/revoke/", views.key_revoke, name="console-key-revoke"),
    path("api/teams/<slug:team>/keys/", views.KeyListApi.as_view(), name="api-keys"),
    path("api/teams/<slug:team>/keys/<int:pk>/", views.KeyDetailApi.as_view(), name="api-key-detail"),
]
