"""The ML runtime: every model behind one shape and one lazy registry.

- `registry`: the factories (`get_clip_embedder`, `get_multilingual_embedder`,
  `get_text_embedder`, `get_translator`, `get_describer`) and `describer_enabled()`; models are
  created on first use, never at import.
- `query_models`: which models searches take with the settings' text route (torch-free).
- `translate`: the MarianMT translator of the translate route.
- `base.InferenceModel`: the locked, idempotent `load()` that calls a subclass's `_load()`.
- `local`: a model id read as a local directory or a hub snapshot in the cache (no network).
- `clip`: the CLIP and text embedders (sentence-transformers); `batches`: the bulk input pipeline.
- `vlm/`: the describers by backend (`transformers`, `openai`), their protocol and int8 kernel.
- `setup`: download and verify the configured models (`manage.py setup_models`).
- `device`: where models run and in which precision; `names`, `images`, `errors`: torch-free
  helpers the web tier uses.
"""
