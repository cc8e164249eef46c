"""Model families and the shared trainer (arrive with the synthesis and adaptation issues)."""
