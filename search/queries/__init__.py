"""Searches and the history they leave (SearchQuery, SearchResult).

`services`: the use cases (`text_search`, `image_search`, `similar_search`, `rerun`, the
deletes), each saving one history entry; `retrieval`: a query embedded with the index's own
model and its nearest images (also what descriptions and evaluation use); `uploads`: what an
uploaded image must be, re-encoded from its pixels; `selectors`: a user's own history;
`views`/`api`: the search page, history pages and their API.
"""
