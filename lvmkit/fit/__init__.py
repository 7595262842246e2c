"""fit layer (see DESIGN.md)."""
