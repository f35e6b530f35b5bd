"""What people and other tools read: events as text and JSON, tables and histograms."""
