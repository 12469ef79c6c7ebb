"""Dataset, ImageClass and Image move from the search app to catalog, tables and rows kept.

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
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.CreateModel(
            name='Dataset',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.SlugField(max_length=100, unique=True)),
                ('root', models.CharField(help_text='Absolute path of the prepared dataset.', max_length=1024)),
                ('source', models.CharField(choices=[('tinyimagenet', 'TinyImageNet'), ('imagefolder', 'Image folder')], max_length=32)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'db_table': 'search_dataset',
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='ImageClass',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('wnid', models.CharField(max_length=64, verbose_name='WordNet id')),
                ('name', models.CharField(help_text='The first synonym.', max_length=255)),
                ('names', models.JSONField(default=list, help_text='All synonyms, in words.txt order.')),
                ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='classes', to='catalog.dataset')),
            ],
            options={
                'verbose_name_plural': 'image classes',
                'db_table': 'search_imageclass',
                'ordering': ['dataset', 'wnid'],
            },
        ),
        migrations.CreateModel(
            name='Image',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('split', models.CharField(choices=[('train', 'train'), ('val', 'val'), ('test', 'test')], max_length=8)),
                ('path', models.CharField(help_text='POSIX path relative to the dataset root.', max_length=512)),
                ('width', models.PositiveIntegerField()),
                ('height', models.PositiveIntegerField()),
                ('mode', models.CharField(help_text='Pillow mode on disk: RGB, L, ...', max_length=8)),
                ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='images', to='catalog.dataset')),
                ('image_class', models.ForeignKey(blank=True, help_text='Empty for the unlabelled test split.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='images', to='catalog.imageclass')),
            ],
            options={
                'db_table': 'search_image',
                'ordering': ['id'],
            },
        ),
        migrations.AddIndex(
            model_name='imageclass',
            index=models.Index(fields=['dataset', 'name'], name='search_imag_dataset_4ddf33_idx'),
        ),
        migrations.AddConstraint(
            model_name='imageclass',
            constraint=models.UniqueConstraint(fields=('dataset', 'wnid'), name='unique_class_per_dataset'),
        ),
        migrations.AddIndex(
            model_name='image',
            index=models.Index(fields=['dataset', 'split'], name='search_imag_dataset_d7c921_idx'),
        ),
        migrations.AddIndex(
            model_name='image',
            index=models.Index(fields=['image_class', 'split'], name='search_imag_image_c_cf5a18_idx'),
        ),
        migrations.AddConstraint(
            model_name='image',
            constraint=models.UniqueConstraint(fields=('dataset', 'path'), name='unique_image_path'),
        ),
            ],
        ),
    ]
