"""Built-in generators (one module each; registered on import)."""
