"""Who may see or change a user's workspaces: the one access rule of every BenchHub service.

``caller`` is the hub's model of whoever sent the request, as ``HubOAuthenticated.current_user``
gives it: ``kind`` ("user" or "service"), ``name``, ``admin`` and ``scopes`` (the token's scopes,
expanded by the hub). The rule grants, for one owner's workspaces (or one of them):

- **the owner**: a person (``kind`` "user") whose name is the owner's sees and changes them. A
  service never owns workspaces, even one that bears a user's name;
- **a hub admin** (a person with ``admin``) sees and changes everyone's;
- **scopes**, as JupyterHub writes them: ``servers`` or ``admin:servers`` to see and change,
  ``read:servers`` to see; unfiltered (every user's), filtered to the owner
  (``servers!user=alice``) or, when the question names a workspace, to that one
  (``servers!server=alice/lab``), resolved by JupyterHub's own ``check_scopes`` (as HubAuth
  resolves its access scopes). A group filter (``!group=``) grants nothing here: the owner's
  groups are not in the caller's model.
- **a project member** (a person whose hub groups, as the hub identifies them, include the
  workspace's project) sees that workspace: every project role sees the project's workspaces
  and what they did. What else a project role may do (start, enter, edit) is
  :func:`benchhub.projects.decide`'s, asked by the hub, which knows the roles.

Each grant is a function of the caller, the owner, the workspace and its project that returns
the actions it grants. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from jupyterhub.services.auth import check_scopes

__all__ = [
    "CHANGE",
    "GRANTS",
    "SEE",
    "Action",
    "is_person",
    "may",
    "may_for_everyone",
    "permissions",
    "scope_needed",
]


class Action(StrEnum):
    """What a caller wants to do with workspaces (or with what belongs to them: schedules,
    activity, checkpoints, clusters, egress refusals)."""

    SEE = "see"
    CHANGE = "change"


SEE, CHANGE = Action.SEE, Action.CHANGE
_EVERYTHING = frozenset(Action)
_NOTHING: frozenset[Action] = frozenset()

# the JupyterHub scopes that grant each action on servers (JupyterHub expands admin:servers
# into servers into read:servers, but a model may list only the broad one)
_SCOPES = {
    SEE: ("read:servers", "servers", "admin:servers"),
    CHANGE: ("servers", "admin:servers"),
}

Grant = Callable[[Mapping, "str | None", "str | None", "str | None"], frozenset[Action]]


def is_person(caller: Mapping) -> bool:
    """Whether ``caller`` is a person (a hub user), not a service."""
    return caller.get("kind") == "user"


def _as_owner(caller: Mapping, owner, workspace, project=None) -> frozenset[Action]:
    own = owner is not None and is_person(caller) and caller.get("name") == owner
    return _EVERYTHING if own else _NOTHING


def _as_hub_admin(caller: Mapping, owner, workspace, project=None) -> frozenset[Action]:
    return _EVERYTHING if is_person(caller) and caller.get("admin") is True else _NOTHING


def _by_scopes(caller: Mapping, owner, workspace, project=None) -> frozenset[Action]:
    """The actions the caller's server scopes grant on ``owner``'s workspaces (every user's
    when ``owner`` is None: then only unfiltered scopes count). JupyterHub's own resolution of
    filters: a scope for the user covers each of their servers, not the other way round."""
    if owner is None:
        where = ""
    elif workspace is None:
        where = f"!user={owner}"
    else:
        where = f"!server={owner}/{workspace}"
    held = set(caller.get("scopes") or ())
    return frozenset(
        action
        for action, names in _SCOPES.items()
        if check_scopes({name + where for name in names}, held)
    )


def _as_project_member(caller: Mapping, owner, workspace, project=None) -> frozenset[Action]:
    """SEE for a person in the group of the workspace's project (a personal project, "",
    has no members but its owner)."""
    member = (
        workspace is not None
        and bool(project)
        and is_person(caller)
        and project in (caller.get("groups") or ())
    )
    return frozenset({SEE}) if member else _NOTHING


# every source of a grant, in no particular order (a grant is never taken away by another)
GRANTS: tuple[Grant, ...] = (_as_owner, _as_hub_admin, _by_scopes, _as_project_member)


def permissions(
    caller: Mapping, owner: str | None, workspace: str | None = None, project: str | None = None
) -> frozenset[Action]:
    """What ``caller`` may do with ``owner``'s workspaces (``workspace``: with that one only,
    which belongs to ``project`` when known; ``owner`` None: with every user's at once)."""
    granted: set[Action] = set()
    for grant in GRANTS:
        granted |= grant(caller, owner, workspace, project)
    return frozenset(granted)


def may(
    caller: Mapping,
    action: Action,
    owner: str,
    workspace: str | None = None,
    project: str | None = None,
) -> bool:
    """Whether ``caller`` may ``action`` ``owner``'s workspaces (or the one named, of
    ``project`` when known)."""
    return action in permissions(caller, owner, workspace, project)


def may_for_everyone(caller: Mapping, action: Action) -> bool:
    """Whether ``caller`` may ``action`` every user's workspaces at once (list them all, run a
    cleanup over them): a hub admin, or an unfiltered scope."""
    return action in permissions(caller, None)


def scope_needed(action: Action) -> str:
    """The narrowest JupyterHub scope that grants ``action`` (for refusal messages)."""
    return _SCOPES[action][0]
