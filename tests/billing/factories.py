import factory
from django.utils import timezone

from billing.models import UsageRecord
from tests.factories import TeamFactory


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageRecord

    request_id = factory.Sequence(lambda n: f"req-test-{n}")
    team = factory.SubFactory(TeamFactory)
    requested_model = served_model = "openai/gpt-4o-mini"
    status_code = 200
    prompt_tokens, completion_tokens = 100, 50
    cost = 45
    created_at = factory.LazyFunction(timezone.now)


def usage_bulk(*, team, costs, created_at=None) -> list[UsageRecord]:
    """Many usage records in one INSERT (the concurrency tests need thousands)."""
    created_at = created_at or timezone.now()
    return UsageRecord.objects.bulk_create([
        UsageRecordFactory.build(team=team, cost=cost, created_at=created_at) for cost in costs])
