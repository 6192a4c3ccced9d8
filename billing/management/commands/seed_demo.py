import os
from decimal import InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from billing.demo import DEMO_DAILY_BUDGET_USD, DEMO_RPM_LIMIT, seed_demo, to_micro


class Command(BaseCommand):
    help = ("Create what is missing of the demo: team, users, key group, key, catalog, simulator channels, "
            "task tiers. Idempotent; never changes a row that exists (so edits made in the console stay). "
            "Environment: DEMO_API_KEY, DEMO_PASSWORD, OPERATOR_PASSWORD, SUPPORT_PASSWORD (optional: the "
            "support-staff user), SIMULATOR_URL, DEMO_DAILY_BUDGET (USD, 0: none), DEMO_RPM_LIMIT (0: none).")

    def handle(self, *args, **options):
        env = {name: os.environ.get(name) for name in ("DEMO_API_KEY", "DEMO_PASSWORD", "OPERATOR_PASSWORD")}
        missing = [name for name, value in env.items() if not value]
        if missing:
            raise CommandError(f"set {', '.join(missing)} (make run writes them to .env)")
        try:
            budget = to_micro(os.environ.get("DEMO_DAILY_BUDGET") or DEMO_DAILY_BUDGET_USD)
            rpm = int(os.environ.get("DEMO_RPM_LIMIT") or DEMO_RPM_LIMIT)
        except (InvalidOperation, ValueError, OverflowError) as exc:
            raise CommandError(f"DEMO_DAILY_BUDGET is a decimal and DEMO_RPM_LIMIT a whole number ({exc})")
        if budget < 0 or rpm < 0:
            raise CommandError("DEMO_DAILY_BUDGET and DEMO_RPM_LIMIT must not be negative")
        demo = seed_demo(api_key=env["DEMO_API_KEY"], owner_password=env["DEMO_PASSWORD"],
                         operator_password=env["OPERATOR_PASSWORD"],
                         support_password=os.environ.get("SUPPORT_PASSWORD") or None,
                         simulator_url=os.environ.get("SIMULATOR_URL", "http://127.0.0.1:9100"),
                         daily_budget=budget, rpm_limit=rpm)
        self.stdout.write(f"demo team '{demo.team.slug}' ready")
        if demo.created:
            self.stdout.write(f"  created: {', '.join(demo.created)}")
        if demo.kept and options["verbosity"] > 1:
            self.stdout.write(f"  kept as they are: {', '.join(demo.kept)}")
