"""Evaluation: 1:1 verification (10-fold), 1:N identification (rank-k, mAP), and their figures."""
