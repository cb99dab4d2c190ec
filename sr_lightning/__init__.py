"""sr-lightning."""
