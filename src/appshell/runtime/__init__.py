"""One session's life and the shells it runs: boot → audit → safety → run → teardown."""
