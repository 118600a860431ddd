"""Inference: a checkpoint in, a ready model out, and the model run over images.

The one layer between the stored files and every stage that runs a trained network (eval, analyze, use,
the frozen teacher of a distillation run, benchmarks): :mod:`.model` turns a
:class:`~fskd_cli.core.checkpoint.Checkpoint` into a ready backbone (names and shapes of its tensors
checked against the architecture), :mod:`.lowres` makes LR inputs the way the run made its training
images, brings native-size crops to the model's input, batches them, and adds the mirror embedding.
"""
