"""Serializers more than one API module shares."""
from rest_framework import serializers


class UsageFilters(serializers.Serializer):
    """The filters of a usage list (the team's, support/api.py, and every team's, operator_api.py)."""

    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    model = serializers.CharField(required=False, help_text="Part of the requested or served model")
    status = serializers.RegexField(r"^(ok|error|4xx|5xx|\d{3})$", required=False,
                                    help_text="ok, error, 4xx, 5xx or an HTTP status code")
    request_id = serializers.CharField(required=False, help_text="req_… or chatcmpl-…")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
