"""Deployment: export a fixed (searched) detector to TorchScript and ONNX and verify it against the eager model.

Sits above ``modeling``/``data`` and below ``cli``; onnx and onnxruntime are imported inside functions only.
"""
