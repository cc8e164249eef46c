"""spade model family."""
