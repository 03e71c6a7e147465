"""The explorer's pages: each has `layout(queries, params)` and `register(app, queries)`."""
