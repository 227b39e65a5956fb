"""Tool-call routers: tools declared in YAML, the pydantic models of their calls, prompts and exports.

Torch-free: the data stages, validators and (later) the runtime router import it.
"""
