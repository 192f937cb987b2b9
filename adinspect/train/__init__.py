"""Training: click simulation, pseudo labels, trainers for ADClick and ADClick-Seg (orchestration)."""
