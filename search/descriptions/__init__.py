"""Descriptions of images, written by a VLM from the labels of their retrieved neighbours.

`services`: request one (identical requests share one generation), run one in the worker,
watch for stalls; `rag`: the retrieved context and the prompt, the one generation step
evaluation uses too; `queue`: the fair round-robin queue, bounded per user and in all;
`tasks`: the background task; `selectors`: a user's own descriptions, and whether they are on;
`views`/`api`: the polling pages and their API.
"""
