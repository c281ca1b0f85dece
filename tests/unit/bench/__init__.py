"""bench/: the benchmark's arithmetic."""
