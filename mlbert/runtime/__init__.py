"""The model runtime: onnxruntime sessions, tokenization, batching, providers, CPUs, the Classifier."""
