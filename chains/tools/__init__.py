"""The tool-calling layer: grammars, call plans, tool rendering and parsing, structured output, and the
budget and repetition guards that make constrained replies finish (used by backends, chat and protocols)."""
