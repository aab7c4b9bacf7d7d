"""Database migrations: one sqlite-utils Migrations set per database (client, server)."""
