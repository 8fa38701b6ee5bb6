"""The SQL stack shared by SQL persistence and the SQL jobboard: one engine factory and one
driver-error translation (``engine``), and Alembic migrations with a database-level lock
(``migrate``), one lineage each."""
