"""Building the statements leaddb sends, and compiling SQLAlchemy Core to asyncpg's form."""
