"""What keeps the database safe: engine listeners, SQL reading, per-connection setup, sandbox, guard, read-only."""
