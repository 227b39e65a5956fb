"""LLM generation: requests, the model roulette, the dispatcher and the resumable journal."""
