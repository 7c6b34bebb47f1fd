"""Workspace clusters: Son of Grid Engine and Spark (static or autoscaled) attached to a workspace.

Pure: ``settings`` validates what a user asks for, ``sge`` builds Grid Engine's configuration
and reads its XML, ``spark`` reads Spark's, ``scaling`` decides how a dynamic cluster grows and
shrinks, ``containers`` builds the Docker objects, ``addresses`` hands out subnets and member
addresses.

The service (``python -m hub_services.clusters``): ``app`` is the process, ``service`` the
reconciler (the clusters users asked for, converged with what runs), ``scaler`` one scaling
pass over a cluster, ``nodes`` creates and removes its containers through the core's
``DockerEngine``, ``state`` persists the records, ``web`` is the HTTP API and page.
"""
