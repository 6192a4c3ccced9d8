from django import forms
from django.http import Http404
from django.shortcuts import redirect, render
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView, team_view
from keys import selectors, services
from keys.models import ApiKey


def _visible_keys(access, user):
    """Key readers see the team's keys; everyone else only their own."""
    owner = None if access.can(roles.KEYS_READ) else user
    return selectors.api_keys(team=access.team, owner=owner)


def _key_for_change(access, user, pk) -> ApiKey:
    key = _visible_keys(access, user).filter(pk=pk).first()
    if key is None:
        raise Http404("No such key.")
    if not (access.can(roles.KEYS_MANAGE) or (access.can(roles.KEYS_OWN) and key.owner_id == user.id)):
        access.require(roles.KEYS_MANAGE)
    return key


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=80)
    group = forms.ModelChoiceField(queryset=None)

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = selectors.key_groups(team=team)


@team_view(get=(roles.KEYS_READ, roles.KEYS_OWN), post=roles.KEYS_OWN)
def key_list(request, access):
    form = KeyCreateForm(request.POST or None, team=access.team)
    secret = None
    if request.method == "POST" and form.is_valid():
        _, secret = services.api_key_create(team=access.team, owner=request.user, group=form.cleaned_data["group"],
                                            name=form.cleaned_data["name"])
        form = KeyCreateForm(team=access.team)
    return render(request, "console/keys.html", {
        "access": access, "team": access.team, "keys": _visible_keys(access, request.user), "form": form,
        "secret": secret,
    })


@team_view(get=roles.KEYS_OWN, model=ApiKey)
def key_revoke(request, access, pk):
    key = _key_for_change(access, request.user, pk)
    if request.method == "POST":
        services.api_key_revoke(api_key=key)
    return redirect("console-keys", team=access.team.slug)


class KeyOutput(serializers.ModelSerializer):
    group = serializers.CharField(source="group.name")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "mask", "group", "status", "allowed_models", "expires_at", "last_used_at",
                  "created_at"]


class KeyListApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "POST": roles.KEYS_OWN}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=80)
        group = serializers.CharField(max_length=80)
        allowed_models = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def get(self, request, team):
        return Response(KeyOutput(_visible_keys(self.access, request.user), many=True).data)

    def post(self, request, team):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = selectors.key_groups(team=self.access.team).filter(name=data.validated_data["group"]).first()
        if group is None:
            raise serializers.ValidationError({"group": ["No such key group in this team."]})
        key, secret = services.api_key_create(
            team=self.access.team, owner=request.user, group=group, name=data.validated_data["name"],
            allowed_models=data.validated_data["allowed_models"], expires_at=data.validated_data["expires_at"])
        return Response({**KeyOutput(key).data, "secret": secret}, status=201)


class KeyDetailApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "DELETE": roles.KEYS_OWN}
    team_object_model = ApiKey

    def get(self, request, team, pk):
        key = _visible_keys(self.access, request.user).filter(pk=pk).first()
        if key is None:
            raise Http404("No such key.")
        return Response(KeyOutput(key).data)

    def delete(self, request, team, pk):
        services.api_key_revoke(api_key=_key_for_change(self.access, request.user, pk))
        return Response(status=204)
