"""The built-in message templates (Russian): one NAME.j2 file per occasion, shipped as data."""
