"""Inspection and evaluation in-process: predict, evaluate on a labelled test set, plots."""
