"""Measuring: in-process, scale, serving, labelling, reliability (soak, fault, malformed) and peer
(anomalib PatchCore, `peer`) benchmarks."""
