"""Stored counts of classes and images (search/catalog/counts.py), counted once here for
the rows already imported."""

from django.db import migrations, models
from django.db.models import Count

SPLIT_FIELDS = {"train": "train_count", "val": "val_count", "test": "test_count"}


def count_existing(apps, schema_editor):
    Dataset = apps.get_model("catalog", "Dataset")
    Image = apps.get_model("catalog", "Image")
    ImageClass = apps.get_model("catalog", "ImageClass")
    per_class = dict(
        Image.objects.filter(image_class__isnull=False)
        .order_by()
        .values("image_class")
        .annotate(n=Count("id"))
        .values_list("image_class", "n")
    )
    classes = list(ImageClass.objects.only("id"))
    for image_class in classes:
        image_class.image_total = per_class.get(image_class.pk, 0)
    ImageClass.objects.bulk_update(classes, ["image_total"], batch_size=500)
    for dataset in Dataset.objects.all():
        per_split = dict(
            Image.objects.filter(dataset=dataset)
            .order_by()
            .values("split")
            .annotate(n=Count("id"))
            .values_list("split", "n")
        )
        dataset.class_count = ImageClass.objects.filter(dataset=dataset).count()
        for split, field in SPLIT_FIELDS.items():
            setattr(dataset, field, per_split.get(split, 0))
        dataset.save(update_fields=["class_count", *SPLIT_FIELDS.values()])


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="class_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="dataset",
            name="test_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="dataset",
            name="train_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="dataset",
            name="val_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="imageclass",
            name="image_total",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(count_existing, migrations.RunPython.noop),
    ]
