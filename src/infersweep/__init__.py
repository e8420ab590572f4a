"""infersweep: which inference runtime, precision, batch and image size wins on this hardware."""

__version__ = "0.1.0"
