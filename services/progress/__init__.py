"""Progress: every event -> the session read model in PostgreSQL -> session.status."""
