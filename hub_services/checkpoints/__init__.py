"""The checkpoints hub service: periodic checkpoints of running workspaces, the API and the page.

The checkpoint library itself is ``benchhub.checkpoints``."""
