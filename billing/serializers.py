"""Serializers more than one API module shares."""
from rest_framework import serializers

from billing.models import UsageRecord
from core.redaction import redact


class UsageFilters(serializers.Serializer):
    """The filters of a usage list (the team's, support/api.py, and every team's, operator_api.py)."""

    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    model = serializers.CharField(required=False, help_text="Part of the requested or served model")
    status = serializers.RegexField(r"^(ok|error|4xx|5xx|\d{3})$", required=False,
                                    help_text="ok, error, 4xx, 5xx or an HTTP status code")
    request_id = serializers.CharField(required=False, help_text="req_… or chatcmpl-…")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=1_000_000_000, default=0)


class UsageOutput(serializers.ModelSerializer):
    """A usage record as the team's (support/api.py) and every team's (operator_api.py) usage lists show it."""
    key_id = serializers.IntegerField(source="api_key_id", allow_null=True)
    response_id = serializers.SerializerMethodField()

    class Meta:
        model = UsageRecord
        fields = ["id", "request_id", "response_id", "created_at", "key_id", "key_mask", "requested_model",
                  "served_model", "status_code", "error_code", "error_text", "prompt_tokens", "completion_tokens",
                  "cached_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens",
                  "usage_clamped", "cost", "latency_ms", "ttfb_ms", "stream", "user_agent", "sdk", "path"]

    def get_response_id(self, obj) -> str:
        return "chatcmpl-" + obj.request_id[4:] if obj.request_id.startswith("req_") else ""

    def to_representation(self, instance):
        # Error text is redacted when recorded; here again with the team's own secrets, and what the client
        # sent (user-agent, path) too.
        secrets = self.context.get("secrets", ())
        return {k: redact(v, secrets) if isinstance(v, str) else v
                for k, v in super().to_representation(instance).items()}
