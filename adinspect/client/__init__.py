"""The line client: inspect images through a running Triton over gRPC (no torch)."""

from adinspect.client.grpc import ImageLike, InspectionClient, InspectionError, ProductInfo, is_transient

__all__ = ["ImageLike", "InspectionClient", "InspectionError", "ProductInfo", "is_transient"]
