from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"

    def ready(self):
        from support import schema  # noqa: F401  (registers the drf-spectacular extensions)
