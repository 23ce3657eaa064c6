"""Row <-> model: hydrating rows into SQLModel instances, and the cache payload codec."""
