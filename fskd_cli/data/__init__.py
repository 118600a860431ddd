"""Data: readers per source format, degradation, manifests, and the torch dataset."""
