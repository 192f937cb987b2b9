"""Training-free fitting: embed good images, fit the bank, calibrate, export and write the package."""
