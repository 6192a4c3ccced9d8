from django.urls import path

from routing import aliases_api, aliases_views

urlpatterns = [
    path("console/t/<slug:team>/model-aliases/", aliases_views.alias_list, name="console-model-aliases"),
    path("console/t/<slug:team>/model-aliases/<int:pk>/", aliases_views.alias_detail,
         name="console-model-alias-detail"),
    path("console/t/<slug:team>/model-aliases/<int:pk>/delete/", aliases_views.alias_delete,
         name="console-model-alias-delete"),
    path("api/teams/<slug:team>/model-aliases/", aliases_api.AliasListApi.as_view(), name="api-model-aliases"),
    path("api/teams/<slug:team>/model-aliases/<int:pk>/", aliases_api.AliasDetailApi.as_view(),
         name="api-model-alias-detail"),
]
