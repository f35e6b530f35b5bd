"""What people and other tools read: events as text and JSON (:mod:`.format`), count tables and
histograms (:mod:`.tables`), flame graphs (:mod:`.flamegraph`) and Chrome trace events
(:mod:`.traceevents`)."""
