"""Infrastructure below every app: the redaction engine and the API error schema. Imports nothing of the project's
apps (tests/test_layers.py holds it to that)."""
