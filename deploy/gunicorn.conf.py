"""gunicorn settings for TinyRAG, from the environment (see .env.example)."""

import os

bind = os.environ.get("TINYRAG_BIND", "0.0.0.0:8000")
# Each worker process holds its own CLIP (~0.6 GB with ViT-B/32); the FAISS index is
# memory-mapped, one copy in the page cache for all workers (benchmarks/index_memory.py):
# size workers by memory, and use threads for concurrency within one.
workers = int(os.environ.get("TINYRAG_WEB_WORKERS", "2"))
threads = int(os.environ.get("TINYRAG_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("TINYRAG_WEB_TIMEOUT", "60"))
graceful_timeout = 30
max_requests = 2000  # recycle workers now and then; jitter avoids all restarting at once
max_requests_jitter = 200
# Request heads (OWASP Denial of Service): the longest URL the site links to is far below 4 kB,
# and a browser sends ~15 headers. gunicorn answers anything larger with a 400 before Django.
# Bodies have no gunicorn limit: Django refuses them (search/queries/upload_handlers.py).
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190  # a header, cookies included
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):
    """Load the index and the models before the first request, not during it; the log says
    when it starts and when the worker is ready."""
    from search.ml.device import configure_cpu_threads

    # the workers share the machine's cores: each takes its share of torch threads
    configure_cpu_threads(processes=workers)
    if os.environ.get("TINYRAG_WARM_UP", "1") != "0":
        from django.db import connections

        from search.ops.health import warm_up_and_say

        # heartbeat between steps: loading may take longer than `timeout`
        warm_up_and_say(worker.log.info, before="the first request", between=worker.notify)
        connections.close_all()  # the warm-up's database reads; this thread serves no request
