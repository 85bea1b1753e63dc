"""The AlphaFold2 network in PyTorch; module and parameter names mirror DeepMind's haiku tree."""
