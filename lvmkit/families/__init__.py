"""families layer (see DESIGN.md)."""
