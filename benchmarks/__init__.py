"""Benchmarks of the device path (`edge-emo bench`): numbers in JSON, never assertions on time."""
