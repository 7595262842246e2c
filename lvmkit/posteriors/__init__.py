"""posteriors layer (see DESIGN.md)."""
