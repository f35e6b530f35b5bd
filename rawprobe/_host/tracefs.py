"""Where tracefs is mounted: the kernel's tracing file system, for the tracefs backend,
``rawprobe probes`` and the privilege check."""

from __future__ import annotations

import os
import stat

from .._errors import KernelFeatureError, PrivilegeError

__all__ = ["TRACEFS_MOUNTS", "find_tracefs"]

# Where tracefs is mounted: its own mount point (Linux 4.1+), or inside debugfs on older set-ups.
TRACEFS_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def find_tracefs() -> str:
    """Where tracefs is mounted (the directory holding ``uprobe_events``).

    Raises:
        PrivilegeError: It is mounted, but this process may not look inside (tracefs is
            mounted mode 0700 by default: root only).
        KernelFeatureError: Not mounted, or the kernel lacks CONFIG_UPROBE_EVENTS (the message
            says how to mount it).
    """
    for root in TRACEFS_MOUNTS:
        try:
            os.stat(os.path.join(root, "uprobe_events"))
            return root
        except PermissionError:
            # Only a mounted tracefs refuses: the empty directory sysfs keeps for the mount
            # point is open to everyone.
            try:
                mode = f" (mode {stat.S_IMODE(os.stat(root).st_mode):04o})"
            except OSError:
                mode = ""
            raise PrivilegeError(
                f"tracefs is mounted at {root}{mode}, but this user may not read it: run "
                "rawprobe as root", capability="CAP_DAC_OVERRIDE") from None
        except OSError:
            continue
    if os.path.isdir(TRACEFS_MOUNTS[0]) and os.path.exists(
        os.path.join(TRACEFS_MOUNTS[0], "events")
    ):
        raise KernelFeatureError(
            "tracefs has no uprobe_events: the kernel was built without CONFIG_UPROBE_EVENTS; "
            "use --backend bpf"
        )
    raise KernelFeatureError(
        "tracefs is not mounted: mount it with 'mount -t tracefs nodev /sys/kernel/tracing' "
        "(or use --backend bpf)"
    )
