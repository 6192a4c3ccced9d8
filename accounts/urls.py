from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import views

urlpatterns = [
    path("console/login/", views.LoginView.as_view(), name="login"),
    path("console/logout/", LogoutView.as_view(), name="logout"),
    path("console/language/", views.language_set, name="console-language"),
    path("console/", views.home, name="console-home"),
    path("console/t/<slug:team>/members/", views.members, name="console-members"),
    path("console/t/<slug:team>/members/<int:pk>/role/", views.member_role, name="console-member-role"),
    path("console/t/<slug:team>/members/<int:pk>/remove/", views.member_remove, name="console-member-remove"),
]
