"""Pictures for people: files that other programs draw from rawprobe's results.

``flamegraph`` turns folded stacks into a self-contained interactive SVG flame graph;
``traceevents`` streams events as Chrome's Trace Event Format JSON, which the Perfetto UI and
``chrome://tracing`` open. Both are pure writers: text in, text out, no tracing involved.
"""
