"""The probe language, pure: probe words, fetch-args, filters and aggregation specs.

Nothing here touches a file, a process or the kernel; everything is parsed from text (or built
from typed objects) into frozen values the planner (:mod:`rawprobe._plan`) consumes.
"""
