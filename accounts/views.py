from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from accounts import roles
from accounts.edge import team_view
from accounts.selectors import teams_for_user


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"


@login_required
def home(request):
    teams = list(teams_for_user(user=request.user))
    if len(teams) == 1:
        return redirect("console-dashboard", team=teams[0].slug)
    return render(request, "console/teams.html", {"teams": teams})


@team_view(get=(roles.USAGE_OWN, roles.LOGS_READ, roles.BILLING_READ))
def dashboard(request, access):
    return render(request, "console/dashboard.html", {"access": access, "team": access.team})
