"""Built-in validators (one module each; registered on import)."""
