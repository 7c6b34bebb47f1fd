"""The egress service: it owns the squid proxy of restricted workspaces, renders its policy from
the desired state the spawner records (:mod:`benchhub.egress_state`) and shows refused requests."""
