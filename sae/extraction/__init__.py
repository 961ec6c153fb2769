"""Text extracted from archived objects for full-text search (a PDF's text layer)."""
