"""Deprecations warn, naming the replacement and the release that removes the name."""

from __future__ import annotations

import warnings

from rawprobe._deprecation import warn_deprecated


def old_api() -> int:
    warn_deprecated("old_api()", since="0.2", removal="0.3", instead="new_api()")
    return 1


def test_warning_points_at_the_caller() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert old_api() == 1
    (warning,) = caught
    assert warning.category is DeprecationWarning
    assert str(warning.message) == (
        "old_api() is deprecated since rawprobe 0.2 and will be removed in 0.3; use new_api()")
    assert warning.filename == __file__
