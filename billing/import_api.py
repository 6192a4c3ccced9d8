"""Management API twins of the operator's import pages (platform.manage; reading: platform.read): a dry run
(an uploaded SQLite file or a database URL) that answers its report and a job id, the confirmed run of that
job (a Celery task; poll the job), the import batches, and a batch's rollback."""
from decimal import Decimal

from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from accounts import roles
from accounts.edge import PlatformAPIView
from billing import import_jobs
from billing.models import ImportBatch
from billing.oneapi_import.services import SourceError, import_rollback
from core.api_schema import errors

TAGS = ["operator-imports"]


class _Row(serializers.Serializer):
    kind = serializers.CharField()
    source = serializers.CharField()
    target = serializers.CharField(required=False)
    note = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)


class ReportOutput(serializers.Serializer):
    """billing.oneapi_import's ImportReport: what maps to what, what cannot and why, totals before/after."""
    product = serializers.CharField(help_text="one-api | new-api")
    version = serializers.CharField()
    source = serializers.CharField(help_text="The source, its password removed")
    dry_run = serializers.BooleanField()
    batch = serializers.CharField(allow_blank=True)
    mapped = _Row(many=True)
    skipped = _Row(many=True)
    source_totals = serializers.DictField(child=serializers.IntegerField())
    totals_before = serializers.DictField(child=serializers.IntegerField())
    totals_after = serializers.DictField(child=serializers.IntegerField(),
                                         help_text="balance_micro: balances in micro-units")


class JobOutput(serializers.Serializer):
    id = serializers.CharField()
    state = serializers.ChoiceField(choices=[import_jobs.PREVIEWED, import_jobs.QUEUED, import_jobs.RUNNING,
                                             import_jobs.DONE, import_jobs.FAILED])
    step = serializers.CharField(required=False, allow_blank=True, help_text="The table being imported")
    done = serializers.IntegerField(required=False)
    total = serializers.IntegerField(required=False)
    error = serializers.CharField(required=False, allow_null=True)
    batch_code = serializers.CharField(required=False, allow_null=True)
    preview = ReportOutput(required=False)


class BatchOutput(serializers.ModelSerializer):
    status = serializers.CharField(help_text="active | rolled_back")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = ImportBatch
        fields = ["code", "product", "version", "source_label", "created_by", "created_at", "rolled_back_at",
                  "status", "report", "rollback_report"]


class PreviewInput(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="A SQLite database (One API's one-api.db), multipart")
    source = serializers.CharField(required=False, max_length=500,
                                   help_text="Or a database URL: postgres://…, mysql://… (read only)")
    into_team = serializers.SlugField(required=False, allow_blank=True, default="",
                                      help_text="Every user into this team (empty: one team per user)")
    usd_rate = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0, required=False,
                                        default=Decimal("1"), help_text="Deployment currency units per US dollar")

    def validate(self, data):
        if bool(data.get("file")) == bool(data.get("source")):
            raise serializers.ValidationError("Give a SQLite `file` or a database `source` URL (one of the two).")
        if data["usd_rate"] <= 0:
            raise serializers.ValidationError({"usd_rate": ["A positive rate."]})
        return data


def _refused(exc: SourceError):
    return serializers.ValidationError({"source": [str(exc)]})


class ImportPreviewApi(PlatformAPIView):
    """The dry run: nothing is written. Confirm it with POST /api/operator/imports/ {"job": …}."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(tags=TAGS, request=PreviewInput, responses={200: JobOutput, **errors(400, 401, 403)})
    def post(self, request):
        data = PreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            if values.get("file"):
                job, path = import_jobs.save_upload(values["file"])
                source = f"sqlite:///{path}"
            else:
                job, source = None, import_jobs.check_url(values["source"])
            state = import_jobs.job_preview(source=source, into_team=values["into_team"],
                                            usd_rate=str(values["usd_rate"]), by=request.user, job=job)
        except SourceError as exc:
            raise _refused(exc) from None
        return Response(JobOutput(state).data)


class ImportListApi(PlatformAPIView):
    def initial(self, request, *args, **kwargs):
        # Support staff may read the batches; starting an import is an operator's.
        self.platform_permission = roles.PLATFORM_READ if request.method == "GET" else roles.PLATFORM_MANAGE
        super().initial(request, *args, **kwargs)

    @extend_schema(tags=TAGS, responses={200: BatchOutput(many=True), **errors(401, 403)})
    def get(self, request):
        return Response(BatchOutput(ImportBatch.objects.select_related("created_by").order_by("-created_at")[:200],
                                    many=True).data)

    @extend_schema(tags=TAGS, request=inline_serializer("ImportConfirmInput", {"job": serializers.CharField()}),
                   responses={202: JobOutput, **errors(400, 401, 403, 404)})
    def post(self, request):
        """Run a previewed job (one transaction); answers its state — poll GET …/jobs/{job}/."""
        job = request.data.get("job") if isinstance(request.data, dict) else None
        state = import_jobs.job_confirm(job=job, by=request.user) if isinstance(job, str) else None
        if state is None:
            raise Http404("No such dry run (or it expired): POST /api/operator/imports/preview/ first.")
        return Response(JobOutput(state).data, status=202)


class ImportJobApi(PlatformAPIView):
    platform_permission = roles.PLATFORM_READ

    @extend_schema(tags=TAGS, responses={200: JobOutput, **errors(401, 403, 404)})
    def get(self, request, job):
        state = import_jobs.job_get(job)
        if state is None:
            raise Http404("No such import job.")
        return Response(JobOutput(state).data)


def _batch(code) -> ImportBatch:
    batch = ImportBatch.objects.select_related("created_by").filter(code=code).first()
    if batch is None:
        raise Http404("No such import batch.")
    return batch


class ImportDetailApi(PlatformAPIView):
    platform_permission = roles.PLATFORM_READ

    @extend_schema(tags=TAGS, responses={200: BatchOutput, **errors(401, 403, 404)})
    def get(self, request, code):
        return Response(BatchOutput(_batch(code)).data)


class ImportRollbackApi(PlatformAPIView):
    @extend_schema(tags=TAGS, request=None, responses={200: BatchOutput, **errors(400, 401, 403, 404)})
    def post(self, request, code):
        """Undo the batch, deleting nothing (reversal ledger entries, keys revoked, channels disabled)."""
        batch = _batch(code)
        try:
            import_rollback(batch=batch, by=request.user)
        except SourceError as exc:
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(BatchOutput(_batch(code)).data)
