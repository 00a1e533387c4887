"""Notes: an async FastAPI app (users and their notes) in the common layout."""
