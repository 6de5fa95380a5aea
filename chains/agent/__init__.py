"""Tool calling, structured output and constrained decoding (grammars per batch row)."""
