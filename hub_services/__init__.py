"""BenchHub's hub services (lifecycle, checkpoints, egress, clusters) live in sub-packages here."""
