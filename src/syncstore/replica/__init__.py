"""The local SQLite replica: connection set-up, migrations, change capture."""
