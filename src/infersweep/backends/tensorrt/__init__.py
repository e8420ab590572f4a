"""TensorRT, reached two ways: Torch-TensorRT (torch_tensorrt.py) and ONNX Runtime's TensorRT
execution provider (onnxruntime_trt.py). What both need (the batch profile, engine keys, the GPU's
identity, timing caches, workspace) is in common.py."""
