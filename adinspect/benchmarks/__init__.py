"""Measuring adinspect: latency, scale, and quality against a peer method (`peer`, anomalib's PatchCore)."""
