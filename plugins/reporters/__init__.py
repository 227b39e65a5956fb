"""Built-in reporters (one module each; registered on import)."""
