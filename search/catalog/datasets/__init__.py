"""Getting image collections onto disk and into the database.

`download` fetches or copies the archive, `tinyimagenet` lays out and checks TinyImageNet-200,
`layout` finds the images of a prepared tree, `importer` loads their metadata into the database.
"""

from __future__ import annotations

from search.errors import ApplicationError


class DatasetError(ApplicationError):
    """A dataset operation that cannot go on; the message is one line for a person."""

    code = "dataset"
