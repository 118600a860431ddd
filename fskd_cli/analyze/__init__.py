"""Statistics, figures and tables over trained models and results (paper Section 3.3, Figures 3-5)."""
