"""Workspace clusters: Son of Grid Engine (static or autoscaled) attached to a workspace.

``settings`` validates what a user asks for, ``sge`` builds Grid Engine's configuration and
reads its XML, ``scaler`` decides how a dynamic cluster grows and shrinks. All three are pure.
"""
