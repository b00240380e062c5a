"""End-to-end pipelines built from the library: the quickstart and the mini reproduction."""
