"""Facts about this host that rawprobe reads from /proc and /sys:
process mappings, privileges, opening the files probes name, and tracefs (uprobe_events
definitions and the groups rawprobe's runs create)."""
