"""A FastAPI lead service on leaddb: see app.py and README.md."""
