"""Workspace clusters: Son of Grid Engine (static or autoscaled) attached to a workspace.

Pure: ``settings`` validates what a user asks for, ``sge`` builds Grid Engine's configuration
and reads its XML, ``scaler`` decides how a dynamic cluster grows and shrinks, ``containers``
builds the Docker objects, ``addresses`` hands out subnets and member addresses.

The service (``python -m hub_services.clusters``): ``controller`` reconciles the clusters
users asked for with what runs, ``autoscaler`` is one scaling pass over a cluster, ``nodes``
creates and removes its containers through ``engine`` (docker-py behind one executor),
``state`` persists the records, ``service`` is the HTTP API and page, ``app`` the process.
"""
