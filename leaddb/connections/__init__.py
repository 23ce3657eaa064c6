"""What talks to the servers: the asyncpg pool, the session role, Redis transports, and the
mapping of driver errors to leaddb's."""
