"""The recorder process: owns the log, the key and the raw input; runs the session as its child."""
