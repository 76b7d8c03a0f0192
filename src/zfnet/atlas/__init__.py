"""The unit atlas: every unit of the chosen layers over the whole validation set, every method side by side, as data,
images and static pages."""
