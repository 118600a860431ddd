"""One training loop for teacher and student, and the checkpoints it writes and reads."""
