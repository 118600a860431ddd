"""Using a trained model outside the benchmarks: embed photos, verify a pair, export, import a teacher.

- :mod:`.model`: a checkpoint's backbone loaded once with its input convention and degradation.
- :mod:`.photos`: photos (files or folders) to aligned crops, with a status for every photo.
- :mod:`.embed`: crops to unit embeddings (mirror added as eval does), and the ``.npz``/``.csv`` output.
- :mod:`.verify`: the cosine of two photos and the decision at a threshold read from the run's evals.
- :mod:`.export`: ONNX / TorchScript files checked against PyTorch after writing.
- :mod:`.import_teacher`: insightface and AdaFace weights as an fskd teacher run.
"""
