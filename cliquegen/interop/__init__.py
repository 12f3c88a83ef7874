"""Other layouts and tools: the authors' and torchvision's checkpoints, timm's model interface,
and export to ONNX, torch.export, TorchScript and safetensors.
"""
