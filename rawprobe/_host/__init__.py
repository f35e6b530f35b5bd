"""Facts about this host that rawprobe reads from /proc and /sys:
process mappings, privileges, and opening the files probes name."""
