"""Which image name a swarm node runs: pure, no Docker.

Images reach the nodes in one of two ways (docs/swarm.md, "Images"): loaded into each node's
engine (``docker save | docker load``, the default: the template's name as it is), or pulled
from a registry the site runs (``BenchSwarmSpawner.image_registry``, e.g. ``manager:5000``,
where ``images/build.sh`` pushes each image it builds when ``BENCHHUB_REGISTRY`` is set). With a
registry, a template's image without a registry part runs as ``<registry>/<image>``, the name
it was pushed under, so a node that lacks it (or holds an older one) pulls it there; an image
that names its own registry is left as it is.
"""

from __future__ import annotations

import re

# host[:port]: a name or address as Docker's image references take it (no scheme, no path)
_REGISTRY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")


def registry_problem(registry: str) -> str | None:
    """Why ``registry`` cannot be a registry address (host or host:port), or None."""
    if registry == "" or _REGISTRY.fullmatch(registry):
        return None
    return (
        f"image_registry must be host or host:port (the address every node pulls from, "
        f"e.g. manager:5000), without scheme or path; got {registry!r}"
    )


def names_registry(image: str) -> bool:
    """Whether ``image`` names its registry: Docker's rule, the part before the first "/"
    holds a "." or a ":" or is "localhost"."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def node_image(image: str, registry: str) -> str:
    """The name a node runs ``image`` under: ``<registry>/<image>`` with a site registry
    (``registry`` not ""), unless the image names its own registry; else ``image``."""
    if not registry or names_registry(image):
        return image
    return f"{registry}/{image}"
