"""estimators layer (see DESIGN.md)."""
