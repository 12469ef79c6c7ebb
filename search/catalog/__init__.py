"""The collection: what images there are, of which classes, and where their files lie.

Models: Dataset, ImageClass, Image (the database is the source of truth for metadata).
`datasets/` gets a collection onto disk and into the database (download, prepare, check,
import: TinyImageNet-200 and plain image folders), each step a management command here.
`selectors` reads it (a file's path is resolved safely inside its dataset root);
`services` makes thumbnails; `views`/`api` serve the collections page, files and classes.
"""
