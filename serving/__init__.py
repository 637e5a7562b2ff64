"""The FastAPI service bidders call per impression."""
