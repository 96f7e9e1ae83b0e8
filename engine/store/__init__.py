"""The database: schema, migrations, contacts, message and campaign state, dead letters,
table queries."""
