"""fskd: low-resolution recognition by feature-similarity knowledge distillation."""
__version__ = "0.1.0"
