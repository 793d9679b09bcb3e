"""PostgreSQL store: the only modules that run SQL. asyncpg records never leave this package."""
