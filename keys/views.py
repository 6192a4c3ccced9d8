from django.conf import settings
from django.contrib import messages
from django.db import IntegrityError
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
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


def _with_spend(team, keys) -> list[ApiKey]:
    """Each key with `period_spend` (recorded usage cost since its budget period started) and
    `budget_left` (None: no budget)."""
    from billing.selectors import key_period_spend  # billing sits above keys

    keys = list(keys)
    spend = key_period_spend(team=team, keys=keys, now=timezone.now())
    for key in keys:
        key.period_spend = spend.get(key.pk, 0)
        key.budget_left = None if key.budget_limit is None else key.budget_limit - key.period_spend
    return keys


STATUS_FILTERS = {"active": ApiKey.ACTIVE, "revoked": ApiKey.REVOKED}


def _keys_page(request, access, form, status=200):
    reveal = reveal_once_pop(request, "secret")
    keys = _visible_keys(access, request.user)
    search = request.GET.get("q", "").strip()[:80]
    if search:
        keys = keys.filter(Q(name__icontains=search) | Q(mask__icontains=search) | Q(prefix__icontains=search))
    status_filter = request.GET.get("status", "")
    if status_filter in STATUS_FILTERS:
        keys = keys.filter(status=STATUS_FILTERS[status_filter])
    response = render_team(request, access, "console/keys.html", {
        "keys": _with_spend(access.team, keys), "form": form, "reveal": reveal,
        "search": search, "status_filter": status_filter if status_filter in STATUS_FILTERS else "",
        "filtered": bool(search or status_filter in STATUS_FILTERS),
        "base_url": settings.TOLLGATE_PUBLIC_BASE_URL.rstrip("/"),
        "can_create": access.can(roles.KEYS_OWN), "can_manage_groups": access.can(roles.KEYS_MANAGE),
    }, status=status)
    return never_cache_if(response, reveal)


def _limits_allowed(access) -> bool:
    """Limits on a key are a team admin's control (a member may not lift the budget of their own key)."""
    return access.can(roles.KEYS_MANAGE)


@team_view(get=(roles.KEYS_READ, roles.KEYS_OWN), post=roles.KEYS_OWN)
def key_list(request, access):
    form = KeyCreateForm(request.POST or None, team=access.team, model_choices=_model_choices(access.team),
                         with_limits=_limits_allowed(access))
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
    form = KeyEditForm(request.POST or None, api_key=key, model_choices=_model_choices(access.team),
                       with_limits=_limits_allowed(access))
    if request.method == "POST" and form.is_valid():
        services.api_key_update(api_key=key, **form.cleaned_data)
        messages.success(request, _("Key “%(name)s” saved.") % {"name": key.name})
        return redirect("console-key-detail", team=access.team.slug, pk=key.pk)
    return render_team(request, access, "console/key_detail.html", {
        "key": key, "form": form, "can_change": _may_change(access, request.user, key), **_key_usage(key),
    }, status=400 if form.errors else 200)


def _key_usage(key) -> dict:
    """The key's limits (own, group's, effective) and its spend by day and model over 30 days."""
    # Billing sits above keys: its usage records and chart helper are imported where they are used.
    from billing.money import money_display
    from billing.selectors import key_budgets, key_spend_breakdown
    from billing.views import _chart

    now = timezone.now()
    spend = key_spend_breakdown(key=key, days=30, now=now)
    top = max((row["spend"] for row in spend.by_model), default=0) or 1
    for row in spend.by_model:
        row["share"] = round(100 * row["spend"] / top)
    return {"limits": selectors.limit_rows(key=key, budgets=key_budgets(key=key, now=now)), "spend": spend,
            "spend_chart": _chart(spend.days, [("spend", "spend")], bar_label=lambda d: money_display(d["spend"]),
                                  axis_label=money_display)}


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


# --- Management API ------------------------------------------------------------------------------------------
def _errors(*codes) -> dict:
    # The error body's schema (ErrorOutput) is declared by the support API, above keys in the app stack.
    return {code: OpenApiResponse(description="Error: {\"error\": {message, type, param, code}}") for code in codes}


LIMIT_OUTPUT_FIELDS = ["budget_limit", "budget_period", "rpm_limit", "tpm_limit", "max_concurrency"]


class LimitsInput(serializers.Serializer):
    """Limits, each optional in a PATCH; null means "no limit at this level"."""

    budget_limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**62,
        help_text="Budget per period in micro-units (10⁻⁶ of the currency): 25000000 is 25.00. null: no budget.")
    # keys.models.Limits.PERIODS, as the model serializers show them: one BudgetPeriodEnum in the schema.
    budget_period = serializers.ChoiceField(choices=ApiKey.PERIODS, required=False,
                                            help_text="When the budget resets: 00:00 UTC daily, Mondays, the 1st.")
    rpm_limit = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2_147_483_647,
                                         help_text="Requests per minute (calendar minutes); null: no limit.")
    tpm_limit = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2_147_483_647,
                                         help_text="Prompt + output tokens per minute; null: no limit.")
    max_concurrency = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                               max_value=2_147_483_647, help_text="Requests in flight; null: no limit.")


DEBUG_HELP = ("A debug key may ask for the upstream request body to be echoed (debug: {echo_upstream_body: true} "
              "on a stream), secrets redacted. Team owners and admins only.")


def _limits_of(validated: dict) -> dict:
    return {name: validated[name] for name in LIMIT_OUTPUT_FIELDS if name in validated}


class KeyOutput(serializers.ModelSerializer):
    group = serializers.CharField(source="group.name")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "mask", "group", "status", "allowed_models", "allowed_ips", "expires_at",
                  *LIMIT_OUTPUT_FIELDS, "is_debug", "last_used_at", "created_at"]


class KeyListApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "POST": roles.KEYS_OWN}

    class InputSerializer(LimitsInput):
        name = serializers.CharField(max_length=80)
        group = serializers.CharField(max_length=80)
        allowed_models = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        is_debug = serializers.BooleanField(required=False, default=False, help_text=DEBUG_HELP)

    class CreatedOutput(KeyOutput):
        secret = serializers.CharField(help_text="The key's secret: shown once, never stored.")

        class Meta(KeyOutput.Meta):
            fields = [*KeyOutput.Meta.fields, "secret"]

    @extend_schema(tags=["keys"], responses={200: KeyOutput(many=True), **_errors(401, 403, 404)})
    def get(self, request, team):
        return Response(KeyOutput(_visible_keys(self.access, request.user), many=True).data)

    @extend_schema(tags=["keys"], request=InputSerializer,
                   responses={201: CreatedOutput, **_errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = selectors.key_groups(team=self.access.team).filter(name=data.validated_data["group"]).first()
        if group is None:
            raise serializers.ValidationError({"group": ["No such key group in this team."]})
        limits = _limits_of(data.validated_data)
        if (limits or data.validated_data["is_debug"]) and not _limits_allowed(self.access):
            raise PermissionDenied("Only a team owner or admin may set a key's limits or make it a debug key.")
        key, secret = services.api_key_create(
            team=self.access.team, owner=request.user, group=group, name=data.validated_data["name"],
            allowed_models=data.validated_data["allowed_models"],
            expires_at=data.validated_data["expires_at"], is_debug=data.validated_data["is_debug"], **limits)
        return Response({**KeyOutput(key).data, "secret": secret}, status=201)


class KeyDetailApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "PATCH": roles.KEYS_OWN,
                             "DELETE": roles.KEYS_OWN}
    team_object_model = ApiKey

    class PatchSerializer(LimitsInput):
        name = serializers.CharField(max_length=80, required=False)
        group = serializers.CharField(max_length=80, required=False, help_text="The key group's name.")
        allowed_models = serializers.ListField(child=serializers.CharField(), required=False)
        is_debug = serializers.BooleanField(required=False, help_text=DEBUG_HELP)

    @extend_schema(tags=["keys"], responses={200: KeyOutput, **_errors(401, 403, 404)})
    def get(self, request, team, pk):
        key = _visible_keys(self.access, request.user).filter(pk=pk).first()
        if key is None:
            raise Http404("No such key.")
        return Response(KeyOutput(key).data)

    @extend_schema(tags=["keys"], request=PatchSerializer, responses={200: KeyOutput, **_errors(400, 401, 403, 404)})
    def patch(self, request, team, pk):
        key = _key_for_change(self.access, request.user, pk)
        data = self.PatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        if key.status != ApiKey.ACTIVE and changes:
            raise serializers.ValidationError({"status": ["A revoked key cannot be changed."]})
        limits = _limits_of(changes)
        if (limits or "is_debug" in changes) and not _limits_allowed(self.access):
            raise PermissionDenied("Only a team owner or admin may set a key's limits or make it a debug key.")
        group = key.group
        if "group" in changes:
            group = selectors.key_groups(team=self.access.team).filter(name=changes["group"]).first()
            if group is None:
                raise serializers.ValidationError({"group": ["No such key group in this team."]})
        models = changes.get("allowed_models", key.allowed_models)
        key = services.api_key_update(api_key=key, name=changes.get("name", key.name), group=group,
                                      allowed_models=models, allowed_ips=key.allowed_ips,
                                      expires_at=key.expires_at, is_debug=changes.get("is_debug"), **limits)
        return Response(KeyOutput(key).data)

    @extend_schema(tags=["keys"], responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request, team, pk):
        services.api_key_revoke(api_key=_key_for_change(self.access, request.user, pk))
        return Response(status=204)


class KeyGroupOutput(serializers.ModelSerializer):
    class Meta:
        model = KeyGroup
        fields = ["id", "name", "allowed_models", "routes_only", *LIMIT_OUTPUT_FIELDS, "created_at"]


class KeyGroupInput(LimitsInput):
    name = serializers.CharField(max_length=80)
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=120), required=False,
                                           default=list)
    routes_only = serializers.BooleanField(
        required=False, default=False,
        help_text="Keys of this group may only call route:NAME or auto (no model named directly).")


def _group_name_taken(team, name, group=None) -> None:
    taken = selectors.key_groups(team=team).filter(name__iexact=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    if taken.exists():
        raise serializers.ValidationError({"name": ["A key group with this name exists in this team."]})


class KeyGroupListApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "POST": roles.KEYS_MANAGE}

    @extend_schema(tags=["key groups"], responses={200: KeyGroupOutput(many=True), **_errors(401, 403, 404)})
    def get(self, request, team):
        return Response(KeyGroupOutput(selectors.key_groups(team=self.access.team), many=True).data)

    @extend_schema(tags=["key groups"], request=KeyGroupInput,
                   responses={201: KeyGroupOutput, **_errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = KeyGroupInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        _group_name_taken(self.access.team, values["name"])
        try:
            group = services.key_group_create(
                team=self.access.team, name=values["name"], routes_only=values["routes_only"],
                allowed_models=values["allowed_models"], **_limits_of(values))
        except IntegrityError:
            raise serializers.ValidationError({"name": ["A key group with this name exists in this team."]}) from None
        return Response(KeyGroupOutput(group).data, status=201)


class KeyGroupDetailApi(TeamAPIView):
    permissions_by_method = {"GET": (roles.KEYS_READ, roles.KEYS_OWN), "PATCH": roles.KEYS_MANAGE}
    team_object_model = KeyGroup

    class PatchSerializer(KeyGroupInput):
        name = serializers.CharField(max_length=80, required=False)
        allowed_models = serializers.ListField(child=serializers.CharField(max_length=120), required=False)
        routes_only = serializers.BooleanField(
            required=False, help_text="Keys of this group may only call route:NAME or auto.")

    def _group(self, pk) -> KeyGroup:
        group = selectors.key_groups(team=self.access.team).filter(pk=pk).first()
        if group is None:
            raise Http404("No such key group.")
        return group

    @extend_schema(tags=["key groups"], responses={200: KeyGroupOutput, **_errors(401, 403, 404)})
    def get(self, request, team, pk):
        return Response(KeyGroupOutput(self._group(pk)).data)

    @extend_schema(tags=["key groups"], request=PatchSerializer,
                   responses={200: KeyGroupOutput, **_errors(400, 401, 403, 404)})
    def patch(self, request, team, pk):
        group = self._group(pk)
        data = self.PatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        name = changes.get("name", group.name)
        if "name" in changes:
            _group_name_taken(self.access.team, name, group)
        models = changes.get("allowed_models", group.allowed_models)
        try:
            group = services.key_group_update(group=group, name=name, allowed_models=models,
                                              routes_only=changes.get("routes_only"), **_limits_of(changes))
        except IntegrityError:
            raise serializers.ValidationError({"name": ["A key group with this name exists in this team."]}) from None
        return Response(KeyGroupOutput(group).data)
