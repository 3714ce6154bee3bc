"""ONNX: export of the full and cached-step graphs, and ONNX Runtime behind `MaskGITModel`."""
