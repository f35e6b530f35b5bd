"""rawprobe's command-line interface (placeholder on the symbols branch: only ``_symbols``)."""
