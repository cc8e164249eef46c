"""semdisc model family."""
