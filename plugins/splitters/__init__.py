"""Built-in splitters (one module each; registered on import)."""
