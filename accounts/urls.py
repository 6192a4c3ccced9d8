from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import views

urlpatterns = [
    path("console/login/", views.LoginView.as_view(), name="login"),
    path("console/logout/", LogoutView.as_view(), name="logout"),
    path("console/", views.home, name="console-home"),
    path("console/t/<slug:team>/", views.dashboard, name="console-dashboard"),
]
