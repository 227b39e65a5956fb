"""Built-in sources of real labelled data (one module each; registered on import)."""
