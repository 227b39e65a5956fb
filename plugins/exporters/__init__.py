"""Built-in exporters (one module each; registered on import)."""
