"""The unit atlas: every unit of the chosen layers, every method side by side."""
