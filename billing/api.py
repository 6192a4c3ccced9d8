"""Billing management API: a team's balance, ledger, budget alerts, code redemption, spend report and billing
policy (team-scoped TeamAPIViews), and the operator's credit tools (platform staff with platform.manage; not
team-scoped).

One APIView per operation, nested Input/Output serializers, one service or selector call per method. Amounts
are integer micro-units (10⁻⁶ of the deployment currency) everywhere, as in the ledger.
"""
import datetime as dt

from django.conf import settings
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from accounts import roles
from accounts.edge import PlatformAPIView, TeamAPIView
from accounts.models import Team
from billing import selectors, services
from billing.emails import default_alert_recipients
from billing.forms import SpendReportForm
from billing.models import BudgetAlert, CreditBundle, LedgerEntry
from core.api_schema import errors

MAX_AMOUNT = 10**15   # a billion units of currency: anything larger is a typo


class Refused(APIException):
    """A domain refusal (CreditError, ValueError) as a 400 in the project's error shape, with its code."""

    status_code = 400
    default_code = "invalid_request"


class LedgerEntryOutput(serializers.ModelSerializer):
    # Plain strings, not choice enums: the ledger's kinds are documented here, not as a schema component.
    kind = serializers.CharField(help_text="topup, usage, adjustment, refund, redemption or expiry")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "amount", "balance_after", "reason", "created_by", "created_at"]


class CreditedOutput(LedgerEntryOutput):
    credit_expires_at = serializers.DateTimeField(allow_null=True, help_text="When this credit expires, if it does")

    class Meta(LedgerEntryOutput.Meta):
        fields = LedgerEntryOutput.Meta.fields + ["credit_expires_at"]


def _credited(entry: LedgerEntry, bundle: CreditBundle | None = None) -> dict:
    bundle = bundle or CreditBundle.objects.filter(ledger_entry=entry).first()
    entry.credit_expires_at = bundle.expires_at if bundle else None
    return CreditedOutput(entry).data


# --- team-scoped --------------------------------------------------------------------------------------------
class RedeemApi(TeamAPIView):
    permissions_by_method = {"POST": roles.BILLING_REDEEM}

    class InputSerializer(serializers.Serializer):
        code = serializers.CharField(max_length=60, help_text="TG-XXXX-XXXX-XXXX-XXXX (case and dashes ignored)")

    @extend_schema(tags=["billing"], request=InputSerializer,
                   responses={201: CreditedOutput, **errors(400, 401, 403, 404)})
    def post(self, request, team):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            entry = services.redemption_redeem(team=self.access.team, user=request.user,
                                               code=data.validated_data["code"])
        except services.CreditError as exc:
            raise Refused(exc.message, exc.code) from None
        return Response(_credited(entry), status=201)


class LedgerListApi(TeamAPIView):
    """The team's ledger, newest first; `balance_after` is the balance once each entry was applied."""

    permissions_by_method = {"GET": roles.BILLING_READ}

    class FilterSerializer(serializers.Serializer):
        limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)
        offset = serializers.IntegerField(required=False, min_value=0, default=0)

    class OutputSerializer(serializers.Serializer):
        data = LedgerEntryOutput(many=True)
        has_more = serializers.BooleanField()

    @extend_schema(tags=["billing"], parameters=[FilterSerializer],
                   responses={200: OutputSerializer, **errors(400, 401, 403, 404)})
    def get(self, request, team):
        page = self.FilterSerializer(data=request.query_params)
        page.is_valid(raise_exception=True)
        limit, offset = page.validated_data["limit"], page.validated_data["offset"]
        entries = list(selectors.ledger_entries(team=self.access.team)[offset:offset + limit + 1])
        return Response(self.OutputSerializer({"data": entries[:limit], "has_more": len(entries) > limit}).data)


class BundleOutput(serializers.ModelSerializer):
    source = serializers.CharField(help_text="topup, redemption or grant")

    class Meta:
        model = CreditBundle
        fields = ["id", "amount", "remaining", "expires_at", "source", "created_at"]


class BalanceApi(TeamAPIView):
    permissions_by_method = {"GET": roles.BILLING_READ}

    class OutputSerializer(serializers.Serializer):
        balance = serializers.IntegerField(help_text="Micro-units: the sum of the team's ledger")
        currency = serializers.CharField()
        bundles = BundleOutput(many=True, help_text="Credit that expires, soonest first (`remaining` is brought "
                                                    "up to date hourly)")

    @extend_schema(tags=["billing"], responses={200: OutputSerializer, **errors(401, 403, 404)})
    def get(self, request, team):
        return Response(self.OutputSerializer({
            "balance": selectors.team_balance(team=self.access.team), "currency": settings.TOLLGATE_CURRENCY,
            "bundles": services.credit_bundles_open(team=self.access.team)}).data)


class AlertListApi(TeamAPIView):
    """Budget alerts that still hold in the current periods (one per budget, its highest threshold)."""

    permissions_by_method = {"GET": roles.BILLING_READ}

    class OutputSerializer(serializers.ModelSerializer):
        scope_kind = serializers.CharField(help_text="key, group, route, team or balance")

        class Meta:
            model = BudgetAlert
            fields = ["id", "scope_kind", "scope_id", "label", "threshold", "period_tag", "spent", "limit",
                      "created_at"]

    @extend_schema(tags=["billing"], responses={200: OutputSerializer(many=True), **errors(401, 403, 404)})
    def get(self, request, team):
        return Response(self.OutputSerializer(services.active_alerts(team=self.access.team), many=True).data)


class SpendMetricsOutput(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a status of 400 or more")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.IntegerField(help_text="Micro-units")


class SpendRowOutput(SpendMetricsOutput):
    key_id = serializers.IntegerField(allow_null=True, help_text="group_by=key (null: a deleted key)")
    key_name = serializers.CharField(allow_null=True, help_text="group_by=key")
    key_mask = serializers.CharField(allow_null=True, help_text="group_by=key")
    model = serializers.CharField(allow_null=True, help_text="group_by=model: served, else requested")
    day = serializers.DateField(allow_null=True, help_text="group_by=day (UTC)")
    app_title = serializers.CharField(allow_null=True, help_text="group_by=app: the X-Title header (\"\": none)")
    http_referer = serializers.CharField(allow_null=True, help_text="group_by=app: the HTTP-Referer header")


def _with_range(fields: dict, make) -> dict:
    """Add the `from` and `to` fields ("from" is a Python keyword: it cannot be a class attribute)."""
    fields["from"], fields["to"] = make("from"), make("to")
    return fields


class SpendApi(TeamAPIView):
    """The team's usage cost between two UTC days (both included; default: the last 30 days) grouped by key,
    model, day or app (X-Title / HTTP-Referer), with totals: the console's spend report. Costs in micro-units."""

    permissions_by_method = {"GET": (roles.BILLING_READ, roles.LOGS_READ)}

    class FilterSerializer(serializers.Serializer):
        group_by = serializers.ChoiceField(choices=selectors.SPEND_GROUPS, required=False, default="key")

        def get_fields(self):
            helps = {"from": "First day, YYYY-MM-DD (UTC); default: 29 days before `to`",
                     "to": "Last day, YYYY-MM-DD (UTC), included; default: today"}
            return _with_range(super().get_fields(), lambda name: serializers.DateField(
                required=False, input_formats=["%Y-%m-%d"], help_text=helps[name]))

        def validate(self, data):
            until = data.get("to") or timezone.now().date()
            since = data.get("from") or until - dt.timedelta(days=SpendReportForm.DEFAULT_DAYS - 1)
            if since > until:
                raise serializers.ValidationError({"from": "must not be after `to`"})
            if (until - since).days + 1 > SpendReportForm.MAX_DAYS:
                raise serializers.ValidationError({"from": f"a range is at most {SpendReportForm.MAX_DAYS} days"})
            return {**data, "from": since, "to": until}

    class OutputSerializer(serializers.Serializer):
        group_by = serializers.CharField(help_text="key, model, day or app")
        currency = serializers.CharField()
        rows = SpendRowOutput(many=True, help_text="Highest cost first (by day: every day of the range, in order)")
        totals = SpendMetricsOutput(help_text="The whole range: the rows add up to it")

        def get_fields(self):
            return _with_range(super().get_fields(), lambda name: serializers.DateField())

    @extend_schema(tags=["billing"], parameters=[FilterSerializer],
                   responses={200: OutputSerializer, **errors(400, 401, 403, 404)})
    def get(self, request, team):
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        d = query.validated_data
        since = dt.datetime.combine(d["from"], dt.time.min, tzinfo=dt.UTC)
        until = dt.datetime.combine(d["to"] + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        report = selectors.spend_report(team=self.access.team, since=since, until=until, group_by=d["group_by"])
        return Response(self.OutputSerializer({
            "from": d["from"], "to": d["to"], "group_by": report.group_by, "currency": settings.TOLLGATE_CURRENCY,
            "rows": report.rows, "totals": report.totals}).data)


class PolicyApi(TeamAPIView):
    """The team's billing policy: monthly cap (micro-units, null: none), the percentages at which budgets
    alert, and who is mailed (empty: the team's owners and admins). A PUT sets all three and reaches
    running gateways within a second; the price multiplier is the operator's and is not set here."""

    permissions_by_method = {"GET": roles.BILLING_READ, "PUT": roles.BILLING_MANAGE}

    class InputSerializer(serializers.Serializer):
        monthly_cap = serializers.IntegerField(min_value=1, max_value=MAX_AMOUNT, allow_null=True,
                                               help_text="Micro-units per calendar month (UTC); null: no cap")
        alert_thresholds = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=100), max_length=10,
            help_text="Whole percentages, e.g. [80, 100]; [] for no alerts")
        alert_recipients = serializers.ListField(child=serializers.EmailField(), max_length=20,
                                                 help_text="Email addresses; [] for the default recipients")

    class OutputSerializer(InputSerializer):
        default_recipients = serializers.ListField(child=serializers.EmailField(),
                                                   help_text="Who is mailed while alert_recipients is empty")
        updated_at = serializers.DateTimeField(allow_null=True, help_text="null: never set (the defaults)")

    def _output(self, policy):
        return self.OutputSerializer({
            "monthly_cap": policy.monthly_cap, "alert_thresholds": policy.alert_thresholds,
            "alert_recipients": policy.alert_recipients, "updated_at": policy.updated_at,
            "default_recipients": default_alert_recipients(team_id=self.access.team.pk)}).data

    @extend_schema(tags=["billing"], responses={200: OutputSerializer, **errors(401, 403, 404)})
    def get(self, request, team):
        return Response(self._output(selectors.billing_policy(team=self.access.team)))

    @extend_schema(tags=["billing"], request=InputSerializer,
                   responses={200: OutputSerializer, **errors(400, 401, 403, 404)})
    def put(self, request, team):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            policy = services.billing_policy_set(team=self.access.team, **data.validated_data)
        except ValueError as exc:
            raise Refused(str(exc), "invalid_value") from None
        return Response(self._output(policy))


# --- operator (platform.manage) -----------------------------------------------------------------------------
class RedemptionBatchApi(PlatformAPIView):
    class InputSerializer(serializers.Serializer):
        count = serializers.IntegerField(min_value=1, max_value=1000)
        amount = serializers.IntegerField(min_value=1, max_value=MAX_AMOUNT, help_text="Micro-units per code")
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                               help_text="Codes cannot be redeemed after this")
        name = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
        credit_valid_days = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                                     help_text="Redeemed credit expires this many days later")

    class RedemptionBatchOutput(serializers.Serializer):
        batch = serializers.CharField()
        name = serializers.CharField()
        amount = serializers.IntegerField(help_text="Micro-units per code")
        expires_at = serializers.DateTimeField(allow_null=True)
        credit_valid_days = serializers.IntegerField(allow_null=True)
        created_at = serializers.DateTimeField()
        created_by = serializers.CharField(allow_null=True)
        total = serializers.IntegerField()
        used = serializers.IntegerField()
        unused = serializers.IntegerField()
        disabled = serializers.IntegerField(help_text="Voided")

    class RedemptionBatchCreatedOutput(InputSerializer):
        batch = serializers.CharField()
        codes = serializers.ListField(child=serializers.CharField(), help_text="Shown once: store them now")

    @extend_schema(tags=["operator"], responses={200: RedemptionBatchOutput(many=True), **errors(401, 403)})
    def get(self, request):
        """Every batch, newest first, with its used / unused / voided counts (never the codes)."""
        return Response(self.RedemptionBatchOutput(selectors.redemption_batches()[:500], many=True).data)

    @extend_schema(tags=["operator"], request=InputSerializer,
                   responses={201: RedemptionBatchCreatedOutput, **errors(400, 401, 403)})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        codes = services.redemption_batch_create(created_by=request.user, **data.validated_data)
        batch = services.redemption_batch_of(code=codes[0])
        return Response(self.RedemptionBatchCreatedOutput({**data.validated_data, "batch": batch, "codes": codes}
                                                          ).data, status=201)


class RedemptionBatchVoidApi(PlatformAPIView):
    """Void (disable) the batch's codes that are still unused; redeemed ones keep their history."""

    class RedemptionBatchVoidOutput(serializers.Serializer):
        batch = serializers.CharField()
        voided = serializers.IntegerField(help_text="Codes disabled by this call")

    @extend_schema(tags=["operator"], request=None,
                   responses={200: RedemptionBatchVoidOutput, **errors(401, 403, 404)})
    def post(self, request, batch):
        if selectors.redemption_batch(batch=batch) is None:
            raise Http404("No such batch.")
        voided = services.redemption_batch_void(batch=batch)
        return Response(self.RedemptionBatchVoidOutput({"batch": batch, "voided": voided}).data)


class TeamCreditApi(PlatformAPIView):
    """Credit a team (a top-up, optionally expiring as a bundle) or adjust its balance either way; the reason
    is the audit trail. Send the same idempotency_key to retry safely."""

    class InputSerializer(serializers.Serializer):
        kind = serializers.RegexField(r"^(credit|adjustment)$", help_text="credit or adjustment")
        amount = serializers.IntegerField(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT,
                                          help_text="Micro-units; a credit is positive, an adjustment non-zero")
        reason = serializers.CharField(max_length=500)
        idempotency_key = serializers.CharField(max_length=80)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                               help_text="Credit only: the credit expires at this time")

    @extend_schema(tags=["operator"], request=InputSerializer,
                   responses={201: CreditedOutput, **errors(400, 401, 403, 404)})
    def post(self, request, team_id):
        team = Team.objects.filter(pk=team_id).first()
        if team is None:
            raise Http404("No such team.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        common = {"team": team, "amount": d["amount"], "reason": d["reason"], "created_by": request.user,
                  "idempotency_key": f"operator:{d['idempotency_key']}"}
        try:
            if d["kind"] == "adjustment":
                if d["expires_at"] is not None:
                    raise ValueError("only a credit can expire")
                return Response(_credited(services.balance_adjust(**common)), status=201)
            if d["expires_at"] is None:
                return Response(_credited(services.balance_credit(**common)), status=201)
            bundle = services.credit_bundle_grant(**common, expires_at=d["expires_at"], source=CreditBundle.GRANT)
        except ValueError as exc:
            raise Refused(str(exc), "invalid_value") from None
        return Response(_credited(bundle.ledger_entry, bundle), status=201)
