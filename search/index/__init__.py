"""The FAISS index of a collection's CLIP vectors: FAISS ids are `Image` primary keys.

- `build`: embed the chosen splits in shards (resumable after a kill, only new images
  embedded again), then publish `vector_db/<name>/` (index + manifest.json) atomically.
- `service`: `IndexService`, one loaded index per process, reloaded when a newer one is
  published; `search(vectors, k) -> (scores, ids)`. faiss and torch are imported where an
  index is loaded or searched, never by importing this package.
- `selectors`: is an index published, and what its manifest says (for pages and health).
"""
