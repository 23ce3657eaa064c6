"""The generic repository (reads, inserts, changes, bulk writes) and each entity's own queries,
run in a unit of work seen through ``leaddb.repositories.work``."""
