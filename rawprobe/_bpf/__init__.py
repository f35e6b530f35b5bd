"""The BPF backend: rawprobe's precompiled BPF object, its ring buffer, and the session that
plants uprobes running its programs."""
