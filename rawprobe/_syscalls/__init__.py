"""System call and kernel tracepoint probes: tables, metadata and strace-like formatting."""
