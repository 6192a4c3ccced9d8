from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import api, views

urlpatterns = [
    path("console/login/", views.LoginView.as_view(), name="login"),
    path("console/logout/", LogoutView.as_view(), name="logout"),
    path("console/language/", views.language_set, name="console-language"),
    path("console/", views.home, name="console-home"),
    path("console/account/", views.account, name="console-account"),
    path("console/account/tokens/", views.account_tokens, name="console-account-tokens"),
    path("console/account/tokens/<int:pk>/revoke/", views.account_token_revoke, name="console-account-token-revoke"),
    path("console/operator/staff/", views.operator_staff, name="operator-staff"),
    path("console/operator/staff/<int:pk>/deactivate/", views.operator_staff_deactivate,
         name="operator-staff-deactivate"),
    path("console/operator/staff/<int:pk>/reactivate/", views.operator_staff_reactivate,
         name="operator-staff-reactivate"),
    path("api/operator/staff/", api.StaffListApi.as_view(), name="api-operator-staff"),
    path("api/operator/staff/<int:pk>/deactivate/", api.StaffDeactivateApi.as_view(),
         name="api-operator-staff-deactivate"),
    path("api/operator/staff/<int:pk>/reactivate/", api.StaffReactivateApi.as_view(),
         name="api-operator-staff-reactivate"),
    path("console/t/<slug:team>/members/", views.members, name="console-members"),
    path("console/t/<slug:team>/members/<int:pk>/role/", views.member_role, name="console-member-role"),
    path("console/t/<slug:team>/members/<int:pk>/remove/", views.member_remove, name="console-member-remove"),
]
