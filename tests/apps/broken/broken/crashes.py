def _load_settings():
    raise RuntimeError("the app's own config is broken")


_load_settings()
