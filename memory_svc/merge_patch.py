"""JSON Merge Patch (RFC 7386): how PATCH changes a user's state document."""

from __future__ import annotations

from typing import Any

__all__ = ["apply_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` merged in; neither argument is modified.

    An object patch merges member by member and `null` removes a member; any
    other patch (array, string, number...) replaces the target whole.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_merge_patch(result.get(name), value)
    return result
