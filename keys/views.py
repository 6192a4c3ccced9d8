from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView, team_view
from accounts.views import never_cache_if, render_team, reveal_once_pop, reveal_once_put
from keys import selectors, services
from keys.forms import KeyCreateForm, KeyEditForm, KeyGroupForm
from keys.models import ApiKey, KeyGroup


def _visible_keys(access, user):
    """Key readers see the team's keys; everyone else only their own."""
    owner = None if access.can(roles.KEYS_READ) else user
    return selectors.api_keys(team=access.team, owner=owner)


def _visible_key(access, user, pk) -> ApiKey:
    key = _visible_keys(access, user).filter(pk=pk).first()
    if key is None:
        raise Http404("No such key.")
    return key


def _may_change(access, user, key) -> bool:
    return access.can(roles.KEYS_MANAGE) or (access.can(roles.KEYS_OWN) and key.owner_id == user.id)


def _key_for_change(access, user, pk) -> ApiKey:
    key = _visible_key(access, user, pk)
    if not _may_change(access, user, key):
        access.require(roles.KEYS_MANAGE)
    return key


def _model_choices(team):
    # The catalog sits above keys in the app stack; only the console form needs its list of ids.
    from routing.selectors import model_choices

    return model_choices(team=team)


def _keys_page(request, access, form, status=200):
    reveal = reveal_once_pop(request, "secret")
    response = render_team(request, access, "console/keys.html", {
        "keys": _visible_keys(access, request.user), "form": form, "reveal": reveal,
        "base_url": settings.TOLLGATE_PUBLIC_BASE_URL.rstrip("/"),
        "can_create": access.can(roles.KEYS_OWN), "can_manage_groups": access.can(roles.KEYS_MANAGE),
    }, status=status)
    return never_cache_if(response, reveal)


@team_view(get=(roles.KEYS_READ, roles.KEYS_OWN), post=roles.KEYS_OWN)
def key_list(request, access):
    form = KeyCreateForm(request.POST or None, team=access.team, model_choices=_model_choices(access.team))
    if request.method == "POST":
        if not form.is_valid():
            return _keys_page(request, access, form, status=400)
        key, secret = services.api_key_create(team=access.team, owner=request.user, **form.cleaned_data)
        reveal_once_put(request, "secret", key_id=key.pk, name=key.name, secret=secret)
        return redirect("console-keys", team=access.team.slug)
    return _keys_page(request, access, form)


@team_view(get=(roles.KEYS_READ, roles.KEYS_OWN), post=roles.KEYS_OWN, model=ApiKey)
def key_detail(request, access, pk):
    find = _key_for_change if request.method == "POST" else _visible_key
    key = find(access, request.user, pk)
    form = KeyEditForm(request.POST or None, api_key=key, model_choices=_model_choices(access.team))
    if request.method == "POST" and form.is_valid():
        services.api_key_update(api_key=key, **form.cleaned_data)
        messages.success(request, _("Key “%(name)s” saved.") % {"name": key.name})
        return redirect("console-key-detail", team=access.team.slug, pk=key.pk)
    return render_team(request, access, "console/key_detail.html", {
        "key": key, "form": form, "can_change": _may_change(access, request.user, key),
    }, status=400 if form.errors else 200)


@team_view(get=roles.KEYS_OWN, model=ApiKey)
def key_revoke(request, access, pk):
    key = _key_for_change(access, request.user, pk)
    if request.method == "POST" and key.status == ApiKey.ACTIVE:
        services.api_key_revoke(api_key=key)
        messages.success(request, _("Key “%(name)s” (%(mask)s) was revoked.") % {"name": key.name, "mask": key.mask})
    return redirect("console-keys", team=access.team.slug)


@team_view(get=roles.KEYS_OWN, model=ApiKey)
def key_rotate(request, access, pk):
    key = _key_for_change(access, request.user, pk)
    if request.method == "POST":
        if key.status != ApiKey.ACTIVE:
            messages.error(request, _("Only an active key can be rotated."))
            return redirect("console-key-detail", team=access.team.slug, pk=key.pk)
        new_key, secret = services.api_key_rotate(api_key=key)
        reveal_once_put(request, "secret", key_id=new_key.pk, name=new_key.name, secret=secret)
        messages.success(request, _("Key “%(name)s” was rotated: the old secret (%(mask)s) no longer works.")
                         % {"name": key.name, "mask": key.mask})
    return redirect("console-keys", team=access.team.slug)


@team_view(get=roles.KEYS_READ, post=roles.KEYS_MANAGE)
def key_groups(request, access):
    form = KeyGroupForm(request.POST or None, team=access.team, model_choices=_model_choices(access.team))
    if request.method == "POST" and form.is_valid():
        group = services.key_group_create(team=access.team, **form.cleaned_data)
        messages.success(request, _("Group “%(name)s” created.") % {"name": group.name})
        return redirect("console-key-groups", team=access.team.slug)
    return render_team(request, access, "console/key_groups.html", {
        "groups": selectors.key_groups(team=access.team).annotate(key_count=Count("api_keys")), "form": form,
        "can_manage": access.can(roles.KEYS_MANAGE),
    }, status=400 if form.errors else 200)


@team_view(get=roles.KEYS_READ, post=roles.KEYS_MANAGE, model=KeyGroup)
def key_group_detail(request, access, pk):
    group = selectors.key_groups(team=access.team).filter(pk=pk).first()
    if group is None:
        raise Http404("No such key group.")
    form = KeyGroupForm(request.POST or None, team=access.team, group=group,
                        model_choices=_model_choices(access.team))
    if request.method == "POST" and form.is_valid():
        services.key_group_update(group=group, **form.cleaned_data)
        messages.success(request, _("Group “%(name)s” saved.") % {"name": group.name})
        return redirect("console-key-groups", team=access.team.slug)
    return render_team(request, access, "console/key_group_detail.html", {
        "group": group, "form": form, "can_manage": access.can(roles.KEYS_MANAGE),
    }, status=400 if form.errors else 200)


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
