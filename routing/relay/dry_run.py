"""The Routes page's "try it": what the relay would do with a request body for a key (or a key group), without
calling any upstream. The same router (`router.plan`, `router.order_channels`) and the same wording as the
`X-Tollgate-Route` header (`RelayCall.skip` / `RelayCall.route_header`), so the panel cannot drift from what a
real call reports. Only gateway_site/urls.py imports this module (it is part of the relay).
"""
import time
from typing import Any

import orjson
from django.conf import settings
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts import roles
from accounts.edge import TeamAPIView, team_view
from billing import limits
from gateway_site import shared_cache
from keys.auth import context_for
from keys.models import ApiKey
from routing import breaker as br
from routing.adapters.registry import adapter_for
from routing.relay import errors, quota, router, snapshot
from routing.relay.formats.openai import validate_chat
from routing.relay.pipeline import RelayCall, channel_label
from routing.routes_forms import RouteTryForm, parse_request_body
from routing.routes_views import routes_page, try_choices


class _NoRequest:
    """RelayCall keeps its request only for the live path; a dry run has none."""

    META: dict = {}
    body = b""
    path = ""


def key_context(*, team, key=None, key_group=None):
    """The KeyContext the relay would build for a key, or for a new key of a group (no model restriction of
    its own)."""
    if key is None:
        key = ApiKey(team=team, group=key_group, owner_id=0, name="", mask="", status=ApiKey.ACTIVE,
                     allowed_models=[], allowed_ips=[])
    return context_for(key)


def _past_soft_limit(call, request: dict) -> bool:
    """Has the route spent its soft limit this period? Read from the counter its budget check uses (seeded from
    the usage records when missing, as the relay does before its first reservation)."""
    plan, rule = call.route_plan, call.route_plan.rule
    if rule is None or rule.soft_limit is None or plan.downgrade is None:
        return False
    call.model = (plan.models or [plan.downgrade])[0]
    try:
        checks = quota.build(call, request)[0]
    finally:
        call.model = None
    check = limits.route_budget(checks)
    if check is None:
        return False
    if shared_cache.get(check.key) is None:
        limits.rebuild(check)
    raw = shared_cache.get(check.key)
    return raw is not None and int(raw) >= rule.soft_limit


def dry_run(*, team, request: dict, body_size: int, key=None, key_group=None) -> dict:
    """Candidates in the order the pipeline would try them (model × channel) and every skip reason."""
    ctx = key_context(team=team, key=key, key_group=key_group)
    snap = snapshot.load_now()
    call = RelayCall(_NoRequest())
    call.ctx, call.snap = ctx, snap
    result: dict[str, Any] = {"route": None, "candidates": [], "skipped": [], "header": None, "error": None}
    output = "text"
    try:
        if "messages" not in request and "input" in request:  # an embeddings body, planned as /v1/embeddings does
            output, request = "embeddings", {"model": request.get("model"), "messages": []}
        else:
            request = validate_chat(request)
        plan = router.plan(snap, ctx, request, body_size, output)
    except errors.RelayError as err:
        result["error"] = {"status": err.status, "code": err.code, "message": err.message}
        return result
    call.route_plan = plan
    if _past_soft_limit(call, request):
        router.downgrade_past_soft_limit(plan)
    breakers, now = br.read_breakers(), time.time()
    before_first = 0
    models = router.candidate_models(plan)
    for i, model in enumerate(models):
        role = "primary" if i == 0 else "fallback" if i < len(plan.models) else "downgrade"
        channels = router.channels_in_order(plan, snap, model, ctx.team_id)   # with `provider` preferences
        if not channels:
            call.skip(model, None, "no channel serves it")
        for channel in channels:
            if any(br.entry_state(breakers.get(scope), now) == br.OPEN
                   for scope in (br.channel_scope(channel.id), br.model_scope(channel.id, model.id))):
                call.skip(model, channel, "circuit open (cooling down)")
                continue
            if output == "embeddings" and not adapter_for(channel.kind).capabilities.embeddings:
                call.skip(model, channel, "no embeddings API")
                continue
            result["candidates"].append({
                "model": model.public_id, "channel": channel_label(channel, ctx.team_id), "role": role,
                "priority": channel.priority, "weight": channel.weight,
                "within_attempt_limit": len(result["candidates"]) < settings.TOLLGATE_MAX_ATTEMPTS})
            if call.model is None:
                call.model, call.channel, before_first = model, channel, len(call.attempts)
    # The header the call would carry if the first candidate answered (the channel skips before it included).
    all_attempts, call.attempts = call.attempts, call.attempts[:before_first]
    result["route"] = plan.route or "direct"
    result["header"] = call.route_header() if result["candidates"] else None
    result["skipped"] = plan.skipped + all_attempts
    if not result["candidates"]:
        result["error"] = {"status": 503, "code": "no_available_channel",
                           "message": errors.no_available_channel(models[0].public_id, result["skipped"]).message}
    return result


@team_view(get=roles.ROUTES_MANAGE, post=roles.ROUTES_MANAGE)
def route_try(request, access):
    """The console's try-it panel: the routes page again, with the dry run's result."""
    if request.method != "POST":
        return redirect("console-routes", team=access.team.slug)
    keys, groups = try_choices(access.team)
    form = RouteTryForm(request.POST, keys=keys, groups=groups)
    if not form.is_valid():
        return routes_page(request, access, try_form=form, status=400)
    data = form.cleaned_data
    result = dry_run(team=access.team, request=data["body"], body_size=len(request.POST.get("body", "")),
                     key=data.get("key"), key_group=data.get("key_group"))
    return routes_page(request, access, try_form=form, try_result=result)


class TryInput(serializers.Serializer):
    body = serializers.JSONField(help_text="The request body: a JSON object, or a string holding one")
    key_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    key_group_id = serializers.IntegerField(required=False, allow_null=True, default=None)


class TryOutput(serializers.Serializer):
    class Candidate(serializers.Serializer):
        model = serializers.CharField()
        channel = serializers.CharField()
        role = serializers.CharField(help_text="primary, fallback or downgrade")
        priority = serializers.IntegerField()
        weight = serializers.IntegerField()
        within_attempt_limit = serializers.BooleanField(help_text="False: past TOLLGATE_MAX_ATTEMPTS, never tried")

    class Error(serializers.Serializer):
        status = serializers.IntegerField()
        code = serializers.CharField()
        message = serializers.CharField()

    route = serializers.CharField(allow_null=True)
    candidates = Candidate(many=True)
    skipped = serializers.ListField(child=serializers.CharField())
    header = serializers.CharField(allow_null=True, help_text="X-Tollgate-Route if the first candidate served")
    error = Error(allow_null=True, help_text="The relay's answer when it would refuse the call")


class RouteTryApi(TeamAPIView):
    """Dry run: the ordered candidates and skip reasons for a request body, with no upstream call."""

    permissions_by_method = {"POST": roles.ROUTES_MANAGE}

    @extend_schema(tags=["routes"], request=TryInput,
                   responses={200: TryOutput, **{c: OpenApiResponse(description="Error") for c in (400, 403, 404)}})
    def post(self, request, team):
        data = TryInput(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data["body"]
        if isinstance(body, str):
            body = parse_request_body(body, error=serializers.ValidationError, field="body")
        if not isinstance(body, dict):
            raise serializers.ValidationError({"body": [_("Expected a JSON object (the request body).")]})
        keys, groups = try_choices(self.access.team)
        key = group = None
        if data.validated_data["key_id"] is not None:
            key = keys.filter(pk=data.validated_data["key_id"]).select_related("team", "group").first()
            if key is None:
                raise serializers.ValidationError({"key_id": [_("No active key with this id in this team.")]})
        elif data.validated_data["key_group_id"] is not None:
            group = groups.filter(pk=data.validated_data["key_group_id"]).first()
            if group is None:
                raise serializers.ValidationError({"key_group_id": [_("No key group with this id in this team.")]})
        else:
            raise serializers.ValidationError({"key_id": [_("Give key_id or key_group_id.")]})
        return Response(dry_run(team=self.access.team, request=body, body_size=len(orjson.dumps(body)),
                                key=key, key_group=group))
