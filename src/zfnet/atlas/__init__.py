"""The unit atlas: every unit of the chosen layers over the whole validation set, as data, images and static pages."""
