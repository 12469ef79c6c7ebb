from django.db import migrations, models


class Migration(migrations.Migration):
    """Apart from 0004: its data migration updates a deferred foreign key (reused_from), and
    PostgreSQL refuses to build an index in a transaction with pending trigger events."""

    dependencies = [
        ("search", "0004_fair_description_queue"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="description",
            constraint=models.UniqueConstraint(condition=models.Q(("generates", True), ("status__in", ["queued", "running"])), fields=("generation_key",), name="one_generation_in_flight"),
        ),
    ]
