"""Process-wide primitives every layer may use: the session's event loop and greenlet bridge, library frames."""
