"""Reference bank, global retrieval, location-aware matching and the residual-norm map (torch)."""
