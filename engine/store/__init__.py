"""The database: schema, migrations, contacts, delivery state, dead letters, table queries."""
