"""Built-in LLM generation tasks (generator functions that yield requests)."""
