"""Classification: a probability for every label, by embeddings, the served LM, or trained checkpoints."""

from chains.classify.chain import (
    ClassifyInput,
    ClassifyOutput,
    build_classify_chain,
    build_classify_methods,
    classify,
    method_name,
    preflight,
)

__all__ = [
    "ClassifyInput",
    "ClassifyOutput",
    "build_classify_chain",
    "build_classify_methods",
    "classify",
    "method_name",
    "preflight",
]
