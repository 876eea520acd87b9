"""Which model deployment serves an entry, and how the answers of several become one body.

Pure data, no Ray: the ingress splits a request's entries by :func:`group_of`, sends each group to
its deployment with :func:`multiplex_id` as Serve's multiplexed model id, and joins the JSON
bodies with :func:`merge_bodies`. Entries that depend on each other (face detection →
recognition) share a group, so the chain runs inside one replica call and no tensor crosses the
network.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from immich_ml.errors import InvalidInput
from immich_ml.schemas import DEPENDENCIES, Entry

# Tasks whose types feed each other: all of their entries go to one deployment.
_CHAINED = frozenset(task for task, _ in DEPENDENCIES)
# Multiplexed ids are model names; this joins two different names of one chained group.
_ID_SEPARATOR = "+"


def group_of(entry: Entry) -> str:
    """The deployment group of ``entry``: ``<task>`` for chained tasks, else ``<task>-<type>``."""
    if entry.task in _CHAINED:
        return entry.task.value
    return f"{entry.task.value}-{entry.type.value}"


def split(entries: Sequence[Entry], deployed: Sequence[str]) -> dict[str, tuple[Entry, ...]]:
    """``entries`` by group, in request order; a group this cluster does not deploy is a 400."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(group_of(entry), []).append(entry)
    missing = [group for group in groups if group not in deployed]
    if missing:
        raise InvalidInput(
            f"This cluster does not serve {', '.join(missing)}: deployed are {', '.join(deployed)} "
            "(MACHINE_LEARNING_RAY_DEPLOYMENTS)."
        )
    return {group: tuple(members) for group, members in groups.items()}


def multiplex_id(entries: Sequence[Entry]) -> str:
    """The model id a group's request is routed by: its model name(s), sorted, deduplicated.

    Immich names detection and recognition of a face pack alike (``buffalo_l``), so a face
    request is keyed by one name; replicas keep a bounded set of these ids loaded.
    """
    return _ID_SEPARATOR.join(sorted({entry.name for entry in entries}))


def entries_key(model_id: str) -> tuple[str, ...]:
    """The model names of a multiplexed id (inverse of :func:`multiplex_id`)."""
    return tuple(model_id.split(_ID_SEPARATOR))


def merge_bodies(bodies: Sequence[bytes]) -> bytes:
    """One Immich response body from the JSON objects of several groups (one is passed through)."""
    if len(bodies) == 1:
        return bodies[0]
    merged: dict[str, object] = {}
    for body in bodies:
        merged.update(orjson.loads(body))
    return orjson.dumps(merged)


