"""The operator's money and team pages, and the team's "Models & prices": included from gateway_site/urls.py."""
from django.urls import path

from billing import operator_api
from billing import operator_views as views

OP = "console/operator/"

urlpatterns = [
    path(OP + "codes/", views.operator_codes, name="operator-codes"),
    path(OP + "codes/export.csv", views.operator_codes_export, name="operator-codes-export"),
    path(OP + "codes/void/", views.operator_codes_void, name="operator-codes-void"),
    path(OP + "teams/new/", views.operator_team_create, name="operator-team-create"),
    path(OP + "teams/<int:pk>/prices/", views.operator_team_prices, name="operator-team-prices"),
    path(OP + "teams/<int:pk>/prices/multiplier/", views.operator_team_multiplier, name="operator-team-multiplier"),
    path(OP + "teams/<int:pk>/prices/group/", views.operator_group_multiplier, name="operator-group-multiplier"),
    path(OP + "teams/<int:pk>/prices/delete/", views.operator_override_delete, name="operator-override-delete"),
    path(OP + "logs/", views.operator_logs, name="operator-logs"),
    path("console/t/<slug:team>/prices/", views.team_prices, name="console-prices"),
]

# The management API twins (billing/operator_api.py).
A = "api/operator/teams/"
urlpatterns += [
    path("api/teams/<slug:team>/prices/", operator_api.TeamPriceListApi.as_view(), name="api-team-prices"),
    path(A, operator_api.OperatorTeamCreateApi.as_view(), name="api-operator-teams"),
    path(A + "<int:team_id>/prices/", operator_api.OperatorTeamPricesApi.as_view(), name="api-operator-team-prices"),
    path(A + "<int:team_id>/prices/<int:override_id>/", operator_api.OperatorPriceOverrideApi.as_view(),
         name="api-operator-price-override"),
    path(A + "<int:team_id>/multiplier/", operator_api.OperatorTeamMultiplierApi.as_view(),
         name="api-operator-team-multiplier"),
    path(A + "<int:team_id>/key-groups/<int:group_id>/multiplier/", operator_api.OperatorGroupMultiplierApi.as_view(),
         name="api-operator-group-multiplier"),
]
urlpatterns.append(path("api/operator/usage/", operator_api.OperatorUsageListApi.as_view(), name="api-operator-usage"))
