"""The Redis unit-of-work cache."""
