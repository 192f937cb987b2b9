"""Measuring: in-process, scale, serving, labelling and reliability (soak, fault, malformed) benchmarks."""
