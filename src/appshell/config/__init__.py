"""Configuration: the options and their precedence (settings), profiles, the audit policy, secret masking, URLs."""
