"""The choices ``fskd analyze`` offers, as plain names in a module that imports nothing heavy: the command
line lists them (and rejects a mistyped one) without loading torch, numpy or scipy."""

from __future__ import annotations

#: the t-test of ``analyze norms`` (paper Eq. 5): unpaired Welch, or paired over the same images; the first is the default
T_TESTS = ("welch", "paired")
#: the self-attention map of ``analyze attention`` (see :mod:`.attention`); the first is the default
ATTENTION_KINDS = ("squared", "signed")
