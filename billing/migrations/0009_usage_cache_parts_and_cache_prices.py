"""Usage records count cache reads, 5-minute and 1-hour cache writes and reasoning tokens apart (and flag
clamped upstream counts); prices and overrides get 5-minute and 1-hour cache-write prices, filled for
existing rows from the provider's published ratios (billing.money.cache_price_defaults)."""
from django.db import migrations, models

from billing.money import cache_price_defaults


def fill_write_prices(apps, schema_editor):
    for name in ("Price", "PriceOverride"):
        for price in apps.get_model("billing", name).objects.select_related("model"):
            _, w5m, w1h = cache_price_defaults(price.model.provider, price.model.upstream_name, price.input_per_m)
            price.cache_write_5m_per_m, price.cache_write_1h_per_m = w5m, w1h
            price.save(update_fields=["cache_write_5m_per_m", "cache_write_1h_per_m"])


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0008_usage_finish_reason'),
    ]

    operations = [
        migrations.AddField(
            model_name='usagerecord',
            name='cache_write_5m_tokens',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='usagerecord',
            name='cache_write_1h_tokens',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='usagerecord',
            name='reasoning_tokens',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='usagerecord',
            name='usage_clamped',
            field=models.BooleanField(db_default=False, default=False),
        ),
    ] + [
        migrations.AddField(model_name=model, name=name, field=models.BigIntegerField(null=True))
        for model in ('price', 'priceoverride') for name in ('cache_write_5m_per_m', 'cache_write_1h_per_m')
    ] + [
        migrations.RunPython(fill_write_prices, migrations.RunPython.noop),
    ] + [
        migrations.AlterField(model_name=model, name=name, field=models.BigIntegerField())
        for model in ('price', 'priceoverride') for name in ('cache_write_5m_per_m', 'cache_write_1h_per_m')
    ] + [
        migrations.AddConstraint(
            model_name='priceoverride',
            constraint=models.CheckConstraint(condition=models.Q(('cache_write_1h_per_m__gte', 0),
                                                                 ('cache_write_5m_per_m__gte', 0)),
                                              name='priceoverride_cache_not_negative'),
        ),
    ]
