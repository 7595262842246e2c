"""objectives layer (see DESIGN.md)."""
