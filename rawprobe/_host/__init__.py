"""Facts about this host that rawprobe reads from /proc and /sys, and the limits it runs into:
process mappings, privileges, descriptor limits, and opening the files probes name."""
