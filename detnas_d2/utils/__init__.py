"""Small helpers shared by several areas of the package (no detectron2 import)."""
