import os

from django.core.management.base import BaseCommand, CommandError

from billing.demo import seed_demo


class Command(BaseCommand):
    help = "Create or refresh the demo team, key, catalog and simulator channel (idempotent)."

    def handle(self, *args, **options):
        env = {name: os.environ.get(name) for name in ("DEMO_API_KEY", "DEMO_PASSWORD", "OPERATOR_PASSWORD")}
        missing = [name for name, value in env.items() if not value]
        if missing:
            raise CommandError(f"set {', '.join(missing)} (make run writes them to .env)")
        demo = seed_demo(api_key=env["DEMO_API_KEY"], owner_password=env["DEMO_PASSWORD"],
                         operator_password=env["OPERATOR_PASSWORD"],
                         simulator_url=os.environ.get("SIMULATOR_URL", "http://127.0.0.1:9100"))
        self.stdout.write(f"demo team '{demo.team.slug}' ready")
