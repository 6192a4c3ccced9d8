from django.urls import path

from billing import views

urlpatterns = [
    path("console/t/<slug:team>/", views.dashboard, name="console-dashboard"),
    path("console/t/<slug:team>/logs/", views.logs, name="console-logs"),
    path("console/t/<slug:team>/logs/export.csv", views.logs_export, name="console-logs-export"),
    path("console/t/<slug:team>/logs/<int:pk>/", views.log_detail, name="console-log-detail"),
    path("console/t/<slug:team>/billing/", views.billing, name="console-billing"),
    path("console/t/<slug:team>/billing/ledger.csv", views.ledger_export, name="console-ledger-export"),
    path("console/t/<slug:team>/billing/spend/", views.spend_report, name="console-spend"),
    path("console/t/<slug:team>/billing/spend.csv", views.spend_report_export, name="console-spend-export"),
    path("console/t/<slug:team>/billing/policy/", views.billing_policy, name="console-billing-policy"),
    path("console/operator/", views.operator_home, name="operator-home"),
    path("console/operator/catalog/", views.operator_catalog, name="operator-catalog"),
    path("console/operator/catalog/<int:pk>/", views.operator_model, name="operator-model"),
    path("console/operator/catalog/<int:pk>/price/", views.operator_model_price, name="operator-model-price"),
    path("console/operator/teams/", views.operator_teams, name="operator-teams"),
    path("console/operator/teams/<int:pk>/", views.operator_team, name="operator-team"),
]
