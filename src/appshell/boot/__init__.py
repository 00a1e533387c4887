"""Booting the app: the --app grammar, discovery, the engine and its connection check, migrations, release."""
