"""Projects: who may do what with a project's workspaces. Pure: no hub, no engine.

A project is a JupyterHub group whose ``properties`` hold :data:`PROPERTY` (the project's
settings: its owner, each member's standing, its storage size). Group membership (the
groups API) says who is in; the property says with which standing. A member the property does
not mention (added through the groups API alone) has :data:`NEWCOMER`, the least standing:
a project administrator raises it through BenchHub's members endpoint.

A member's **standing** (:class:`Membership`) is a project role (viewer, contributor,
administrator: ICA Bench's contributor and administrator plus Seqera's read-only View) and
ICA's data permissions: a project data level (no access, data provider, viewer,
contributor), upload rights and download rights.

A workspace belongs to one project and carries ICA's **workspace permissions**
(:class:`WorkspacePermissions`): the upload and download rights and the project data level it
runs with, and whether other contributors may use it. A person must meet or exceed them to
start or enter it; site admins and the project's owner and administrators always can, and
their use of someone else's workspace is logged (``Decision.logged``).

A user in no project works in their **personal project** (:func:`personal_project`, name
``""``): they own it, nobody else is in it, it has no shared data.

:func:`decide` is the one rule every hub handler and service asks; :func:`project_data_mode`
says how ``/data/project`` is mounted in a workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum

from jupyterhub.slugs import is_valid_safe_slug

__all__ = [
    "DATA_LEVELS",
    "NEWCOMER",
    "PERSONAL",
    "PROPERTY",
    "ROLES",
    "Act",
    "DataLevel",
    "Decision",
    "Membership",
    "Person",
    "Project",
    "Role",
    "WorkspacePermissions",
    "decide",
    "may_manage",
    "parse_membership",
    "parse_permissions",
    "parse_project_name",
    "personal_project",
    "project_data_mode",
]

PROPERTY = "benchhub_project"  # the key of a project's settings in its group's properties
PERSONAL = ""  # the project name of a user's personal project
INSUFFICIENT = (
    "You are not allowed to use this workspace as your user permissions are not sufficient "
    "compared to the permissions of this workspace"
)  # ICA Bench's wording


class Role(IntEnum):
    """A project role; a higher one can do everything a lower one can."""

    VIEWER = 1
    CONTRIBUTOR = 2
    ADMINISTRATOR = 3

    @property
    def text(self) -> str:
        return self.name.lower()


class DataLevel(IntEnum):
    """ICA's project data level: what a member (or a workspace) may do with the project's
    shared data. ``contributor`` writes it; ``viewer`` and ``data_provider`` read it;
    ``no_access`` does not see it."""

    NO_ACCESS = 0
    DATA_PROVIDER = 1
    VIEWER = 2
    CONTRIBUTOR = 3

    @property
    def text(self) -> str:
        return self.name.lower()


ROLES = tuple(r.text for r in Role)
DATA_LEVELS = tuple(d.text for d in DataLevel)


class Act(StrEnum):
    """What a person wants to do with a workspace of a project."""

    SEE = "see"  # its status, activity, checkpoints, cluster
    CREATE = "create"  # a new workspace of their own in the project
    START = "start"
    STOP = "stop"
    ENTER = "enter"  # use its server (JupyterLab), directly or through a share
    EDIT = "edit"  # its options and permissions
    DELETE = "delete"


_MINIMUM_ROLE = {
    Act.SEE: Role.VIEWER,
    Act.CREATE: Role.CONTRIBUTOR,
    Act.START: Role.CONTRIBUTOR,
    Act.STOP: Role.CONTRIBUTOR,
    Act.ENTER: Role.CONTRIBUTOR,
    Act.EDIT: Role.CONTRIBUTOR,
    Act.DELETE: Role.CONTRIBUTOR,
}
# a contributor acts on others' workspaces only when the workspace allows it, and then only so
_OTHERS_WITH_CONSENT = frozenset({Act.START, Act.STOP, Act.ENTER})
_PERMISSION_FLOOR = frozenset({Act.CREATE, Act.START, Act.ENTER})


@dataclass(frozen=True)
class Membership:
    """A member's standing in a project."""

    role: Role
    data_level: DataLevel
    upload: bool
    download: bool

    def as_json(self) -> dict:
        return {
            "role": self.role.text,
            "data_level": self.data_level.text,
            "upload": self.upload,
            "download": self.download,
        }


NEWCOMER = Membership(Role.VIEWER, DataLevel.VIEWER, upload=False, download=False)
_FULL = Membership(Role.ADMINISTRATOR, DataLevel.CONTRIBUTOR, upload=True, download=True)


@dataclass(frozen=True)
class WorkspacePermissions:
    """ICA's workspace permissions: what a workspace runs with and so what a person must hold
    to start or enter it. ``others_may_use``: other contributors of the project may start,
    stop and enter it (ICA: "contributors can use workspaces created by others")."""

    upload: bool = True
    download: bool = True
    project_data: DataLevel = DataLevel.VIEWER
    others_may_use: bool = False

    def as_json(self) -> dict:
        return {
            "upload": self.upload,
            "download": self.download,
            "project_data": self.project_data.text,
            "others_may_use": self.others_may_use,
        }

    def missing(self, standing: Membership) -> list[str]:
        """What ``standing`` lacks to meet these permissions (empty: it meets them)."""
        lacks = []
        if self.upload and not standing.upload:
            lacks.append("upload rights (permissions.upload)")
        if self.download and not standing.download:
            lacks.append("download rights (permissions.download)")
        if standing.data_level < self.project_data:
            lacks.append(
                f"project data level {self.project_data.text} (permissions.project_data; "
                f"you have {standing.data_level.text})"
            )
        return lacks

    def capped_by(self, standing: Membership) -> WorkspacePermissions:
        """These permissions lowered to what ``standing`` holds (a new workspace's default)."""
        return replace(
            self,
            upload=self.upload and standing.upload,
            download=self.download and standing.download,
            project_data=min(self.project_data, standing.data_level),
        )


@dataclass(frozen=True)
class Project:
    """A project as the hub knows it: ``members`` maps each user in the group to their
    standing (the group's users, with :data:`NEWCOMER` for those the settings do not name);
    ``storage_gb`` is the size of its shared data (0: none)."""

    name: str
    owner: str
    members: Mapping[str, Membership] = field(default_factory=dict)
    storage_gb: int = 0

    @property
    def personal(self) -> bool:
        return self.name == PERSONAL

    @property
    def label(self) -> str:
        return f"personal project of {self.owner}" if self.personal else f"project {self.name}"

    def standing(self, user: str) -> Membership | None:
        """``user``'s standing (the owner is an administrator with every right), None for
        someone not in the project."""
        if user == self.owner:
            return _FULL
        return self.members.get(user)

    @classmethod
    def from_group(cls, name: str, properties: Mapping, users: Iterable[str]) -> Project:
        """The project of JupyterHub group ``name`` (its ``properties`` and user names).
        Settings that do not parse are ignored member by member (a hand-edited group never
        grants more than :data:`NEWCOMER`)."""
        settings = properties.get(PROPERTY) if isinstance(properties, Mapping) else None
        settings = settings if isinstance(settings, Mapping) else {}
        described = settings.get("members")
        described = described if isinstance(described, Mapping) else {}
        members = {}
        for user in users:
            standing, problems = parse_membership(described.get(user))
            members[user] = NEWCOMER if problems else standing
        owner = settings.get("owner")
        storage = settings.get("storage_gb")
        return cls(
            name=name,
            owner=owner if isinstance(owner, str) else "",
            members=members,
            storage_gb=storage if _whole(storage) and storage > 0 else 0,
        )

    def to_properties(self, properties: Mapping | None = None) -> dict:
        """The group's properties with these settings (other keys of ``properties`` kept)."""
        return {
            **(properties or {}),
            PROPERTY: {
                "owner": self.owner,
                "storage_gb": self.storage_gb,
                "members": {user: s.as_json() for user, s in self.members.items() if s != NEWCOMER},
            },
        }


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no size


def personal_project(user: str) -> Project:
    """``user``'s personal project: theirs alone, with no shared data."""
    return Project(name=PERSONAL, owner=user)


@dataclass(frozen=True)
class Person:
    """Who asks: a hub user's name and whether they are a site (hub) admin."""

    name: str
    site_admin: bool = False


@dataclass(frozen=True)
class Decision:
    """:func:`decide`'s answer. ``reason`` says why not (which role or permission is
    missing); ``logged``: allowed only as an admin acting on someone else's workspace, which
    goes to the activity log."""

    allowed: bool
    reason: str = ""
    logged: bool = False

    def __bool__(self) -> bool:
        return self.allowed


def decide(
    person: Person,
    act: Act,
    project: Project,
    owner: str | None = None,
    permissions: WorkspacePermissions | None = None,
) -> Decision:
    """May ``person`` ``act`` on ``owner``'s workspace (with ``permissions``) in ``project``?
    (For :attr:`Act.CREATE`, ``owner`` is the person and ``permissions`` those asked for.)

    - site admins, the project's owner and its administrators may do anything, logged when
      the workspace is someone else's;
    - a viewer only sees; a contributor creates, starts, stops, enters, edits and deletes
      their own workspaces, and starts, stops and enters others' that allow it;
    - to create, start or enter, a non-admin must meet or exceed the workspace's
      permissions (ICA's wording when not).
    """
    owner = person.name if owner is None else owner
    permissions = permissions or WorkspacePermissions()
    own = owner == person.name
    standing = project.standing(person.name)
    if (
        person.site_admin
        or person.name == project.owner
        or (standing is not None and standing.role == Role.ADMINISTRATOR)
    ):
        return Decision(True, logged=not own)
    if standing is None:
        return Decision(False, f"{person.name} is not a member of {project.label}")
    needed = _MINIMUM_ROLE[act]
    if standing.role < needed:
        return Decision(
            False,
            f"to {act.value} a workspace of {project.label} you need the project role "
            f"{needed.text} or higher; you are {standing.role.text}",
        )
    if not own and act != Act.SEE:
        if act not in _OTHERS_WITH_CONSENT:
            return Decision(
                False,
                f"to {act.value} {owner}'s workspace you need the project role administrator; "
                f"you are {standing.role.text}",
            )
        if not permissions.others_may_use:
            return Decision(
                False,
                f"{owner}'s workspace does not allow other project members to use it "
                "(its permission others_may_use is off)",
            )
    if act in _PERMISSION_FLOOR:
        missing = permissions.missing(standing)
        if missing:
            return Decision(False, f"{INSUFFICIENT}: missing {', '.join(missing)}")
    return Decision(True)


def may_manage(person: Person, project: Project) -> Decision:
    """May ``person`` set members' standing in ``project`` (add, change, remove members)?
    Site admins, the project's owner and its administrators may; nobody may in a personal
    project but its owner and site admins."""
    standing = project.standing(person.name)
    if person.site_admin or (standing is not None and standing.role == Role.ADMINISTRATOR):
        return Decision(True)
    if standing is None:
        return Decision(False, f"{person.name} is not a member of {project.label}")
    return Decision(
        False,
        f"to manage the members of {project.label} you need the project role administrator; "
        f"you are {standing.role.text}",
    )


def project_data_mode(project: Project, owner: str, permissions: WorkspacePermissions) -> str:
    """How ``/data/project`` appears in ``owner``'s workspace: ``"none"`` (not mounted: a
    personal project, a project without shared data, a workspace or owner with no access),
    ``"read-write"`` (the workspace's level and the owner's are contributor) or
    ``"read-only"``. Project administrators count as data contributors."""
    standing = project.standing(owner)
    if project.personal or not project.storage_gb or standing is None:
        return "none"
    level = DataLevel.CONTRIBUTOR if standing.role == Role.ADMINISTRATOR else standing.data_level
    level = min(level, permissions.project_data)
    if level == DataLevel.NO_ACCESS:
        return "none"
    return "read-write" if level == DataLevel.CONTRIBUTOR else "read-only"


def _flag(raw: Mapping, key: str, default: bool, problems: list[tuple[str, str]], where: str):
    value = raw.get(key, default)
    if not isinstance(value, bool):
        problems.append((f"{where}.{key}", f"must be true or false, got {value!r}"[:200]))
        return default
    return value


def _choice(raw: Mapping, key: str, enum, default, problems, where: str):
    value = raw.get(key, default.text)
    allowed = [m.text for m in enum]
    if not isinstance(value, str) or value not in allowed:
        problems.append(
            (f"{where}.{key}", f"must be one of {', '.join(allowed)}; got {value!r}"[:200])
        )
        return default
    return enum[value.upper()]


def parse_membership(raw: object) -> tuple[Membership, list[tuple[str, str]]]:
    """A member's standing from JSON ``{role, data_level, upload, download}`` (missing keys
    take :data:`NEWCOMER`'s values) and the problems found as ``(field, message)``."""
    problems: list[tuple[str, str]] = []
    if raw is None:
        return NEWCOMER, [("member", "no settings")]
    if not isinstance(raw, Mapping):
        return NEWCOMER, [("member", "must be a JSON object of role, data_level, upload, download")]
    unknown = sorted(set(raw) - {"role", "data_level", "upload", "download"})
    if unknown:
        problems.append(
            (
                "member",
                f"unknown keys {', '.join(map(str, unknown))}; allowed: role, "
                "data_level, upload, download"[:300],
            )
        )
    standing = Membership(
        role=_choice(raw, "role", Role, NEWCOMER.role, problems, "member"),
        data_level=_choice(raw, "data_level", DataLevel, NEWCOMER.data_level, problems, "member"),
        upload=_flag(raw, "upload", NEWCOMER.upload, problems, "member"),
        download=_flag(raw, "download", NEWCOMER.download, problems, "member"),
    )
    return standing, problems


def parse_permissions(raw: object) -> tuple[WorkspacePermissions, list[tuple[str, str]]]:
    """A workspace's ``permissions`` option (``{upload, download, project_data,
    others_may_use}``, missing keys take the defaults) and its problems as ``(field,
    message)`` with fields like ``permissions.upload``."""
    default = WorkspacePermissions()
    if raw is None:
        return default, []
    if not isinstance(raw, Mapping):
        return default, [
            (
                "permissions",
                "must be a JSON object of upload, download, project_data, "
                f"others_may_use; got {raw!r}"[:200],
            )
        ]
    problems: list[tuple[str, str]] = []
    allowed = ("upload", "download", "project_data", "others_may_use")
    unknown = sorted(str(k) for k in set(raw) - set(allowed))
    if unknown:
        problems.append(
            (
                "permissions",
                f"unknown keys {', '.join(unknown)}; allowed: {', '.join(allowed)}"[:300],
            )
        )
    permissions = WorkspacePermissions(
        upload=_flag(raw, "upload", default.upload, problems, "permissions"),
        download=_flag(raw, "download", default.download, problems, "permissions"),
        project_data=_choice(
            raw, "project_data", DataLevel, default.project_data, problems, "permissions"
        ),
        others_may_use=_flag(
            raw, "others_may_use", default.others_may_use, problems, "permissions"
        ),
    )
    return permissions, problems


PROJECT_NAME_RULE = (
    "empty (your personal project) or a project name: 1 to 30 characters, lower-case letters "
    "a-z, digits 0-9 and single hyphens, starting with a letter"
)


def parse_project_name(raw: object) -> tuple[str, list[tuple[str, str]]]:
    """A workspace's ``project`` option: "" (personal) or the shape of a project name (JupyterHub's
    safe-slug rule, as workspace names), and its problems as ``(field, message)``. Whether the
    project exists and the owner may create in it is the hub's check."""
    if raw is None or raw == PERSONAL:
        return PERSONAL, []
    if not isinstance(raw, str) or not is_valid_safe_slug(raw):
        return str(raw), [("project", f"must be {PROJECT_NAME_RULE}; got {raw!r}"[:300])]
    return raw, []
