"""The search app's models move to the apps of their domain: tables and rows stay.

Dataset, ImageClass and Image go to catalog; SearchQuery and SearchResult to queries;
Description to descriptions. Each model keeps its table (Meta.db_table), so this migration
and their apps' 0001 change only Django's state. Two things outside the tables follow the
move: content types (and so permissions and admin log entries) change app label, and tasks
already queued under the old module path of the description task point to the new one.
"""

from django.db import migrations

MOVED = {
    "dataset": "catalog",
    "imageclass": "catalog",
    "image": "catalog",
    "searchquery": "queries",
    "searchresult": "queries",
    "description": "descriptions",
}
TASK_PATHS = {"search.tasks.generate_description": "search.descriptions.tasks.generate_description"}


def _relabel(apps, *, forward: bool) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model, app in MOVED.items():
        old, new = ("search", app) if forward else (app, "search")
        moving = ContentType.objects.filter(app_label=old, model=model)
        if moving.exists():
            # `migrate catalog` run before this one made fresh, unused content types (and
            # permissions) for the new label: the old ones, which rows point at, win.
            ContentType.objects.filter(app_label=new, model=model).delete()
        moving.update(app_label=new)
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    for old, new in TASK_PATHS.items():
        old, new = (old, new) if forward else (new, old)
        DBTaskResult.objects.filter(task_path=old).update(task_path=new)


def forwards(apps, schema_editor):
    _relabel(apps, forward=True)


def backwards(apps, schema_editor):
    _relabel(apps, forward=False)


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0005_one_generation_in_flight'),
        ('catalog', '0001_initial'),
        ('queries', '0001_initial'),
        ('descriptions', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('django_tasks_database', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
        migrations.RemoveField(
            model_name='imageclass',
            name='dataset',
        ),
        migrations.RemoveField(
            model_name='image',
            name='dataset',
        ),
        migrations.RemoveField(
            model_name='description',
            name='image',
        ),
        migrations.RemoveField(
            model_name='description',
            name='query',
        ),
        migrations.RemoveField(
            model_name='description',
            name='reused_from',
        ),
        migrations.RemoveField(
            model_name='image',
            name='image_class',
        ),
        migrations.RemoveField(
            model_name='searchquery',
            name='source_image',
        ),
        migrations.RemoveField(
            model_name='searchresult',
            name='image',
        ),
        migrations.RemoveField(
            model_name='searchquery',
            name='user',
        ),
        migrations.RemoveField(
            model_name='searchresult',
            name='query',
        ),
        migrations.DeleteModel(
            name='Dataset',
        ),
        migrations.DeleteModel(
            name='Description',
        ),
        migrations.DeleteModel(
            name='ImageClass',
        ),
        migrations.DeleteModel(
            name='Image',
        ),
        migrations.DeleteModel(
            name='SearchQuery',
        ),
        migrations.DeleteModel(
            name='SearchResult',
        ),
        ]),
        migrations.RunPython(forwards, backwards),
    ]
