"""The planner: probe specs and the sites they resolve to, turned into planned events.

Every site a run will probe passes through :func:`rawprobe._plan.sites.check_site`; every
event is a frozen :class:`rawprobe._plan.session.PlannedEvent` that both backends take as it
is. The C/Python ABI of the BPF programs (:mod:`.abi`) and the fetch-arg compiler live here
because the plan is what they describe.
"""
