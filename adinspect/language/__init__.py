"""Language features for ADClick / ADClick-Seg: defect-type prompts and the offline text encoder."""
