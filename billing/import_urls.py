"""The operator's One API / New API import pages and their API twins: included from gateway_site/urls.py."""
from django.urls import path

from billing import import_api
from billing import import_views as views

OP = "console/operator/imports/"

urlpatterns = [
    path(OP, views.operator_imports, name="operator-imports"),
    path(OP + "confirm/", views.operator_import_confirm, name="operator-import-confirm"),
    path(OP + "progress/", views.operator_import_progress, name="operator-import-progress"),
    path(OP + "batches/<int:pk>/", views.operator_import_batch, name="operator-import-batch"),
    path(OP + "batches/<int:pk>/rollback/", views.operator_import_rollback, name="operator-import-rollback"),
    path("api/operator/imports/", import_api.ImportListApi.as_view(), name="api-operator-imports"),
    path("api/operator/imports/preview/", import_api.ImportPreviewApi.as_view(), name="api-operator-import-preview"),
    path("api/operator/imports/jobs/<str:job>/", import_api.ImportJobApi.as_view(), name="api-operator-import-job"),
    path("api/operator/imports/<str:code>/", import_api.ImportDetailApi.as_view(), name="api-operator-import"),
    path("api/operator/imports/<str:code>/rollback/", import_api.ImportRollbackApi.as_view(),
         name="api-operator-import-rollback"),
]
