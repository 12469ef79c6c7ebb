"""TinyRAG's product: one package per domain concern, each with what serves it beside it.

- `catalog`: the collection (Dataset, ImageClass, Image); `datasets/` downloads, prepares,
  checks and imports it (four commands); the collections page and the image files.
- `index`: the FAISS index: `build` (sharded, resumable, published atomically), `service`
  (load, search, reload), `selectors` (is one published, its manifest); `build_index`.
- `ml`: the models behind one lazy registry: CLIP and text encoders, VLM describers by
  backend, and their set-up (`setup_models`).
- `queries`: searches and their history (SearchQuery, SearchResult): text, image and
  "more like this" use cases, uploads, pages and API.
- `descriptions`: Description, the RAG prompt (`rag`), the fair queue and its task, the polling
  pages and API.
- `ops`: health and readiness (`/healthz`, `/readyz`, `doctor`), the job lifecycle that
  descriptions and evaluation runs share (`jobs`), `bootstrap`.
- `web`: what pages and the API share: the error mapping, parsers, common serializers.
- `errors`: ApplicationError, the one base of every error a person can act on.

Writes are keyword-only use cases in `services.py` (catalog, queries, descriptions; the
index's are `build`, ML's `setup`), reads in `selectors.py` (scoped to their owner), beside
the package's views/api, tasks and commands. Layers point one way:
views, API, commands and tasks -> services/selectors -> ml/index -> models. This `search` app
owns no models now: it keeps the migrations that created the tables (they kept their names
when the models moved), the template tags and the page/API URL assembly.
"""
