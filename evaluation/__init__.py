"""Measuring the system on held-out images, through the product's own functions.

`metrics`: pure functions (Recall@k, MRR, Label Inclusion Rate); `config`: what a run
measures, validated; `sampling`: the stratified sample; `measure`: the engine, each step
returning its values (retrieval by `search.queries.retrieval`, RAG by
`search.descriptions.rag`); `services`: a run's life as a job (`search.ops.jobs`), started
by the `evaluate` command or the runs page; `selectors`/`views`/`charts`: the result pages.
"""
