"""Billing management API: include from gateway_site/urls.py with `path("", include("billing.api_urls"))`."""
from django.urls import path

from billing import api

T = "api/teams/<slug:team>/billing/"
OP = "api/operator/"

urlpatterns = [
    path(T + "balance/", api.BalanceApi.as_view(), name="api-billing-balance"),
    path(T + "ledger/", api.LedgerListApi.as_view(), name="api-billing-ledger"),
    path(T + "alerts/", api.AlertListApi.as_view(), name="api-billing-alerts"),
    path(T + "redeem/", api.RedeemApi.as_view(), name="api-billing-redeem"),
    path(T + "spend/", api.SpendApi.as_view(), name="api-billing-spend"),
    path(T + "policy/", api.PolicyApi.as_view(), name="api-billing-policy"),
    path(OP + "redemption-batches/", api.RedemptionBatchApi.as_view(), name="api-operator-redemption-batches"),
    path(OP + "redemption-batches/<slug:batch>/void/", api.RedemptionBatchVoidApi.as_view(),
         name="api-operator-redemption-batch-void"),
    path(OP + "teams/<int:team_id>/credit/", api.TeamCreditApi.as_view(), name="api-operator-team-credit"),
]
