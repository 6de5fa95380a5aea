"""The ONNX runtime for the local backend (HFCHAIN_RUNTIME=onnx): export once, run under the engine."""
