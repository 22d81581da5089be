"""Database wiring: async engine and session factory, tables, bootstrap and migrations."""
