"""pix2pix model family."""
