"""plot layer (see DESIGN.md)."""
