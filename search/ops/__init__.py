"""Running TinyRAG: readiness, diagnosis, set-up and the life of background jobs.

`health`: the checks behind `/readyz`, `manage.py doctor` and gunicorn's warm-up;
`views`: `/healthz` and `/readyz`; `jobs`: claim, heartbeat, progress, stall and retry, one
lifecycle for descriptions and evaluation runs; `progress`: what commands share (tqdm,
workers); commands `bootstrap`, `doctor`, `setup_models`.
"""
