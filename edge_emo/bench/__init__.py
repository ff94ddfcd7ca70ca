"""`edge-emo bench`: what the device path costs (latency, real-time factor, memory, size, the live CPU share).
Not on the device path: it compares against torch when torch is there. Scripts that use it live in
benchmarks/ (not installed)."""
