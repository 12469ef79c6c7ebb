from django.contrib import admin

from search.catalog.models import Dataset, Image, ImageClass


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    # The form runs Dataset.clean(): a root outside TINYRAG_DATA_DIR / TINYRAG_DATASET_ROOTS
    # is refused.
    list_display = ["name", "source", "root", "created_at"]
    list_filter = ["source"]
    search_fields = ["name", "root"]


@admin.register(ImageClass)
class ImageClassAdmin(admin.ModelAdmin):
    list_display = ["wnid", "name", "dataset"]
    list_filter = ["dataset"]
    search_fields = ["wnid", "name", "names"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "path", "split", "image_class", "width", "height", "mode"]
    list_filter = ["dataset", "split", "mode"]
    search_fields = ["path", "image_class__wnid", "image_class__name"]
    list_select_related = ["image_class"]
    raw_id_fields = ["image_class"]
    # Rows and paths come from import_dataset, which read the files; the files are served.
    readonly_fields = ["dataset", "path"]

    def has_add_permission(self, request) -> bool:
        return False
