"""BenchHub's shared core."""
