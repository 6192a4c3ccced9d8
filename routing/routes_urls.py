from django.urls import path

from routing import routes_api, routes_views

# The try-it dry run (console/t/<team>/routes/try/, api/teams/<team>/routes/try/) is part of the relay: it is
# wired in gateway_site/urls.py.
urlpatterns = [
    path("console/t/<slug:team>/routes/", routes_views.route_list, name="console-routes"),
    path("console/t/<slug:team>/routes/auto/", routes_views.route_auto, name="console-route-auto"),
    path("console/t/<slug:team>/routes/<int:pk>/", routes_views.route_detail, name="console-route-detail"),
    path("console/t/<slug:team>/routes/<int:pk>/delete/", routes_views.route_delete, name="console-route-delete"),
    path("api/teams/<slug:team>/routes/", routes_api.RouteListApi.as_view(), name="api-routes"),
    path("api/teams/<slug:team>/routes/auto/", routes_api.AutoRoutingApi.as_view(), name="api-route-auto"),
    path("api/teams/<slug:team>/routes/<int:pk>/", routes_api.RouteDetailApi.as_view(), name="api-route-detail"),
]
