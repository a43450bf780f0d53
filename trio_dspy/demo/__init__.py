"""The coffee-shop demo: an agent, its story, and the sequential-vs-concurrent run."""
