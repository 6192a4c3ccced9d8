from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    # support/schema.py (drf-spectacular extensions) is imported when a schema is built: core.api_schema.SchemaGenerator
