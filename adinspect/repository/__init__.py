"""The Triton model repository: building it from packages, its configs, integrity, monitoring and the
Python-backend models with the steps they call. Torch-free."""
