"""Description moves from the search app to descriptions, table and rows kept.

The table already exists: the search app's migrations 0001-0005 created it. This migration
only tells Django's state that the model now lives here (the search app's 0006 forgets it
there); the database is not touched.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("search", "0005_one_generation_in_flight"),
        ('catalog', '0001_initial'),
        ('queries', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.CreateModel(
            name='Description',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('image_key', models.CharField(help_text='image:<id> or upload:<sha256>; identical requests share it.', max_length=80)),
                ('generates', models.BooleanField(default=True, help_text="Off: shares another row's generation (reused_from) instead of running one.")),
                ('generation_key', models.CharField(blank=True, help_text='sha256 of what identical requests share (search.descriptions.services).', max_length=64)),
                ('backend', models.CharField(max_length=32)),
                ('model', models.CharField(max_length=255)),
                ('prompt_version', models.CharField(max_length=32)),
                ('context_mode', models.CharField(choices=[('retrieved', 'labels of retrieved neighbours'), ('none', 'image only')], max_length=16)),
                ('context', models.JSONField(blank=True, default=dict)),
                ('prompt', models.TextField(blank=True)),
                ('status', models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('done', 'done'), ('failed', 'failed')], default='queued', max_length=8)),
                ('text', models.TextField(blank=True)),
                ('tokens', models.PositiveIntegerField(default=0)),
                ('time_to_first_token_ms', models.FloatField(blank=True, null=True)),
                ('tokens_per_second', models.FloatField(blank=True, null=True)),
                ('error', models.TextField(blank=True)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(auto_now=True, db_index=True)),
                ('image', models.ForeignKey(blank=True, help_text="Empty: the query's uploaded image.", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalog.image')),
                ('query', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='descriptions', to='queries.searchquery')),
                ('reused_from', models.ForeignKey(blank=True, help_text='The generation this row shares: a finished one, or one still in flight.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='descriptions.description')),
            ],
            options={
                'db_table': 'search_description',
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['image_key', 'context_mode', 'model', 'prompt_version', 'status'], name='description_reuse_idx'), models.Index(fields=['status', 'updated_at'], name='description_stall_idx'), models.Index(fields=['status', 'created_at'], name='description_queue_idx')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('generates', True), ('status__in', ['queued', 'running'])), fields=('generation_key',), name='one_generation_in_flight')],
            },
        ),
            ],
        ),
    ]
