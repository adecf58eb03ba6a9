"""doorman inside the frameworks and tools its users already run."""
