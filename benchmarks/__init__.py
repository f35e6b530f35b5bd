"""rawprobe's benchmarks: ``python -m benchmarks`` (see ``__main__``) and standalone scripts."""
