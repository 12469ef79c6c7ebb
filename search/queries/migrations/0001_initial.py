"""SearchQuery and SearchResult move from the search app to queries, tables and rows kept.

The table already exists: the search app's migrations 0001-0005 created it. This migration
only tells Django's state that the model now lives here (the search app's 0006 forgets it
there); the database is not touched.
"""

import django.db.models.deletion
import search.queries.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("search", "0005_one_generation_in_flight"),
        ('catalog', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.CreateModel(
            name='SearchQuery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('text', 'text'), ('image', 'uploaded image'), ('similar', 'more like this')], max_length=8)),
                ('text', models.CharField(blank=True, max_length=500)),
                ('uploaded_image', models.ImageField(blank=True, max_length=255, upload_to=search.queries.models.upload_path)),
                ('top_k', models.PositiveSmallIntegerField()),
                ('filters', models.JSONField(blank=True, default=dict)),
                ('encoder', models.CharField(help_text='Model that embedded the query.', max_length=255)),
                ('index_name', models.CharField(max_length=100)),
                ('index_built_at', models.DateTimeField(blank=True, null=True)),
                ('duration_ms', models.FloatField()),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('source_image', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='similar_queries', to='catalog.image')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='search_queries', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'search queries',
                'db_table': 'search_searchquery',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='SearchResult',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('rank', models.PositiveSmallIntegerField()),
                ('score', models.FloatField()),
                ('image', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalog.image')),
                ('query', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='results', to='queries.searchquery')),
            ],
            options={
                'db_table': 'search_searchresult',
                'ordering': ['query', 'rank'],
            },
        ),
        migrations.AddIndex(
            model_name='searchquery',
            index=models.Index(fields=['user', '-created_at'], name='search_sear_user_id_544a0a_idx'),
        ),
        migrations.AddConstraint(
            model_name='searchresult',
            constraint=models.UniqueConstraint(fields=('query', 'rank'), name='unique_rank_per_query'),
        ),
            ],
        ),
    ]
