"""Management API added with the support portal: key groups, usage records, tickets (team-scoped, every one a
TeamAPIView with per-method permissions) and the caller's own personal access tokens.

One APIView per resource, nested Input/Output serializers, one service or selector call per method. Errors
take the project's `{"error": {...}}` shape (gateway_site.api.exception_handler).
"""
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import roles, tokens
from accounts.edge import TeamAPIView
from accounts.models import PersonalAccessToken
from billing import selectors as billing_selectors
from billing.models import UsageRecord
from billing.serializers import UsageFilters, UsageOutput
from core.api_schema import errors
from support import selectors, services
from support.models import Ticket, TicketEvent


# --- Usage records ------------------------------------------------------------------------------------
class UsageListApi(TeamAPIView):
    """The team's usage records, newest first; callers without logs.read see only their own keys'."""

    permissions_by_method = {"GET": (roles.LOGS_READ, roles.USAGE_OWN)}

    class FilterSerializer(UsageFilters):
        key_id = serializers.IntegerField(required=False, help_text="API key id")

    class OutputSerializer(serializers.Serializer):
        data = UsageOutput(many=True)
        has_more = serializers.BooleanField()

    @extend_schema(tags=["usage"], operation_id="teams_usage_list", parameters=[FilterSerializer],
                   responses={200: OutputSerializer, **errors(400, 401, 403, 404)})
    def get(self, request, team):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        limit, offset = filters.validated_data.pop("limit"), filters.validated_data.pop("offset")
        records = list(billing_selectors.usage_search(
            team=self.access.team, owner=selectors.usage_owner(access=self.access, user=request.user),
            **filters.validated_data)[offset:offset + limit + 1])
        return Response(self.OutputSerializer({"data": records[:limit], "has_more": len(records) > limit},
                                              context={"secrets": selectors.team_secrets(team=self.access.team)}).data)


class UsageDetailApi(TeamAPIView):
    """One usage record, by its request id (`req_…`), the response id the client saw (`chatcmpl-…`) or its
    numeric id."""

    permissions_by_method = {"GET": (roles.LOGS_READ, roles.USAGE_OWN)}
    team_object_model = UsageRecord

    @extend_schema(tags=["usage"], responses={200: UsageOutput, **errors(401, 403, 404)})
    def get(self, request, team, pk):
        owner = selectors.usage_owner(access=self.access, user=request.user)
        record = (billing_selectors.usage_record(team=self.access.team, owner=owner, pk=int(pk)) if pk.isdigit()
                  else selectors.usage_record(team=self.access.team, owner=owner, request_id=pk))
        if record is None:
            raise Http404("No such request in this team.")
        return Response(UsageOutput(record, context={"secrets": selectors.team_secrets(team=self.access.team)}).data)


# --- Tickets --------------------------------------------------------------------------------------------
class TicketEventOutput(serializers.ModelSerializer):
    author = serializers.SerializerMethodField()

    class Meta:
        model = TicketEvent
        fields = ["id", "kind", "author", "by_staff", "body", "from_status", "to_status", "created_at"]

    def get_author(self, obj) -> str | None:
        # Support staff answer as the platform, not as individual accounts.
        return "Tollgate support" if obj.by_staff else (obj.author.username if obj.author else None)


class TicketOutput(serializers.ModelSerializer):
    opened_by = serializers.CharField(source="opened_by.username", allow_null=True, default=None)

    class Meta:
        model = Ticket
        fields = ["id", "subject", "status", "priority", "category", "request_id", "troubleshooting", "owner",
                  "environment",
                  "selected_capability", "last_known_good", "observed_symptom", "evidence", "next_review_at",
                  "opened_by", "created_at", "updated_at"]


TEAM_TICKETS = (roles.TICKETS_WRITE, roles.TICKETS_BILLING)


class TicketListApi(TeamAPIView):
    permissions_by_method = {"GET": TEAM_TICKETS, "POST": TEAM_TICKETS}

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Ticket.STATUSES, required=False)

    class InputSerializer(serializers.Serializer):
        request_id = serializers.CharField(max_length=60, required=False, allow_blank=True,
                                           help_text="req_… or chatcmpl-…: pre-fills the ticket from that request")
        subject = serializers.CharField(max_length=200, required=False)
        priority = serializers.ChoiceField(choices=Ticket.PRIORITIES, default=Ticket.NORMAL)
        category = serializers.ChoiceField(choices=Ticket.CATEGORIES, required=False,
                                           help_text="technical (default) or billing; billing members open billing")
        owner = serializers.CharField(max_length=120, required=False)
        environment = serializers.CharField(max_length=200, required=False)
        selected_capability = serializers.CharField(max_length=200, required=False)
        last_known_good = serializers.CharField(required=False)
        observed_symptom = serializers.CharField(required=False)
        evidence = serializers.CharField(required=False)
        next_review_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema(tags=["tickets"], parameters=[FilterSerializer],
                   responses={200: TicketOutput(many=True), **errors(400, 401, 403, 404)})
    def get(self, request, team):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        reader = selectors.ticket_reader(access=self.access, user=request.user)
        return Response(TicketOutput(selectors.tickets(team=self.access.team, reader=reader,
                                                       **filters.validated_data), many=True).data)

    @extend_schema(tags=["tickets"], request=InputSerializer,
                   responses={201: TicketOutput, **errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields, record = dict(data.validated_data), None
        billing_only = selectors.ticket_reader(access=self.access, user=request.user) is not None
        category = fields.pop("category", Ticket.BILLING if billing_only else Ticket.TECHNICAL)
        if billing_only and category != Ticket.BILLING:
            raise serializers.ValidationError({"category": ["Your role opens billing tickets only."]})
        if request_id := fields.pop("request_id", ""):
            record = selectors.usage_record(team=self.access.team, request_id=request_id,
                                            owner=selectors.usage_owner(access=self.access, user=request.user))
            if record is None:
                raise serializers.ValidationError({"request_id": ["No request with this id in this team."]})
            # What the caller left out comes from the request (redacted again when the ticket is written).
            prefill = services.ticket_prefill(record=record)
            fields = {k: v for k, v in prefill.items() if k != "request_id"} | fields
        if not fields.get("subject"):
            raise serializers.ValidationError({"subject": ["Give a subject (or a request_id to pre-fill it)."]})
        ticket = services.ticket_open(team=self.access.team, opened_by=request.user, record=record,
                                      by_staff=self.access.role is None, category=category, **fields)
        return Response(TicketOutput(ticket).data, status=201)


class TicketDetailApi(TeamAPIView):
    """A ticket with its history as the team sees it (internal notes are never included)."""

    permissions_by_method = {"GET": TEAM_TICKETS}
    team_object_model = Ticket

    class OutputSerializer(TicketOutput):
        events = serializers.SerializerMethodField()

        class Meta(TicketOutput.Meta):
            fields = TicketOutput.Meta.fields + ["events"]

        def get_events(self, obj) -> list[dict]:
            return TicketEventOutput(selectors.ticket_events(ticket=obj, include_internal=False), many=True).data

    @extend_schema(tags=["tickets"], responses={200: OutputSerializer, **errors(401, 403, 404)})
    def get(self, request, team, pk):
        return Response(self.OutputSerializer(_team_ticket(self.access, request.user, pk)).data)


class TicketReplyApi(TeamAPIView):
    permissions_by_method = {"POST": TEAM_TICKETS}
    team_object_model = Ticket

    class InputSerializer(serializers.Serializer):
        body = serializers.CharField()

    @extend_schema(tags=["tickets"], request=InputSerializer,
                   responses={201: TicketEventOutput, **errors(400, 401, 403, 404)})
    def post(self, request, team, pk):
        ticket = _team_ticket(self.access, request.user, pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            event = services.ticket_reply(ticket=ticket, author=request.user, body=data.validated_data["body"],
                                          by_staff=self.access.role is None)
        except services.TicketError as exc:
            raise serializers.ValidationError({exc.field or "body": [exc.message]}) from None
        return Response(TicketEventOutput(event).data, status=201)


class TicketCloseApi(TeamAPIView):
    """The team closes its own ticket."""

    permissions_by_method = {"POST": TEAM_TICKETS}
    team_object_model = Ticket

    @extend_schema(tags=["tickets"], request=None, responses={200: TicketOutput, **errors(401, 403, 404)})
    def post(self, request, team, pk):
        ticket = services.ticket_close(ticket=_team_ticket(self.access, request.user, pk), actor=request.user)
        return Response(TicketOutput(ticket).data)


def _team_ticket(access, user, pk) -> Ticket:
    return selectors.ticket(team=access.team, pk=pk, reader=selectors.ticket_reader(access=access, user=user))


# --- Personal access tokens (the caller's own; not team-scoped) -----------------------------------------
class TokenOutput(serializers.ModelSerializer):
    class Meta:
        model = PersonalAccessToken
        fields = ["id", "name", "mask", "expires_at", "last_used_at", "created_at", "revoked_at"]


class TokenCreatedOutput(TokenOutput):
    token = serializers.CharField(help_text="The secret: shown once, store it now")

    class Meta(TokenOutput.Meta):
        fields = TokenOutput.Meta.fields + ["token"]


class TokenListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=80)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema(tags=["tokens"], responses={200: TokenOutput(many=True), **errors(401, 403)})
    def get(self, request):
        return Response(TokenOutput(tokens.personal_access_tokens(user=request.user), many=True).data)

    @extend_schema(tags=["tokens"], request=InputSerializer,
                   responses={201: TokenCreatedOutput, **errors(400, 401, 403)})
    def post(self, request):
        if isinstance(request.auth, PersonalAccessToken):
            raise PermissionDenied("Create tokens from a signed-in console session, not with a token.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = tokens.personal_access_token_create(user=request.user, **data.validated_data)
        token.token = secret
        return Response(TokenCreatedOutput(token).data, status=201)


class TokenDetailApi(APIView):
    @extend_schema(tags=["tokens"], responses={204: None, **errors(401, 403, 404)})
    def delete(self, request, pk):
        token = tokens.personal_access_tokens(user=request.user).filter(pk=pk).first()
        if token is None:
            raise Http404("No such token.")
        tokens.personal_access_token_revoke(token=token)
        return Response(status=204)
