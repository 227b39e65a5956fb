"""Built-in trainers (one module each; registered on import)."""
