from django.urls import path

from keys import views

urlpatterns = [
    path("console/t/<slug:team>/keys/", views.key_list, name="console-keys"),
    path("console/t/<slug:team>/keys/<int:pk>/", views.key_detail, name="console-key-detail"),
    path("console/t/<slug:team>/keys/<int:pk>/revoke/", views.key_revoke, name="console-key-revoke"),
    path("console/t/<slug:team>/keys/<int:pk>/rotate/", views.key_rotate, name="console-key-rotate"),
    path("console/t/<slug:team>/key-groups/", views.key_groups, name="console-key-groups"),
    path("console/t/<slug:team>/key-groups/<int:pk>/", views.key_group_detail, name="console-key-group-detail"),
    path("api/teams/<slug:team>/keys/", views.KeyListApi.as_view(), name="api-keys"),
    path("api/teams/<slug:team>/keys/<int:pk>/", views.KeyDetailApi.as_view(), name="api-key-detail"),
    path("api/teams/<slug:team>/key-groups/", views.KeyGroupListApi.as_view(), name="api-key-groups"),
    path("api/teams/<slug:team>/key-groups/<int:pk>/", views.KeyGroupDetailApi.as_view(),
         name="api-key-group-detail"),
]
