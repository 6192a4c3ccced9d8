from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("routing", "0005_auto_routing"),
    ]

    operations = [
        migrations.AddField(
            model_name="autorouting",
            name="claude_route",
            field=models.SlugField(blank=True, default="", max_length=60),
        ),
    ]
