"""Triton `postprocess` (gpu flavour): map, score, threshold (+ defect type) → verdict, regions, map.

The same code serves `postprocess_<product>` of a unified package (both flavours), whose config
bakes the product's threshold and name into its parameters instead of receiving them as inputs."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from adinspect.contracts import POSTPROCESS_IN
from adinspect.repository.drain import DrainGate
from adinspect.repository.models.triton_utils import (
    cancelled_response,
    error_logger,
    error_response,
    metric_family,
    optional_input,
)
from adinspect.repository.monitoring import MONITORING_FILE, open_exporter, product_id
from adinspect.repository.steps import RequestError, parse_map_format, postprocess_request


class TritonPythonModel:
    def initialize(self, args):
        # the threshold arrives with each request from residual_<product>, or (a unified package's
        # product step) is baked into the parameters with the product; only metrics need a file
        parameters = json.loads(args["model_config"]).get("parameters", {})
        baked = parameters.get("threshold", {}).get("string_value")
        self.threshold = None if baked is None else np.array([[float(baked)]], np.float32)
        product = parameters.get("product", {}).get("string_value")
        self.product_id = None if product is None else np.array([[product_id(product)]], np.int32)
        table = Path(args["model_repository"]) / args["model_version"] / MONITORING_FILE
        self.log_error = error_logger(args["model_name"])
        self.metrics = open_exporter(table, metric_family, args["model_instance_name"], self.log_error)
        self.drain = DrainGate()  # the last step: in flight until it answers, so serve waits for it

    def execute(self, requests):
        with self.drain.batch():
            return self._execute(requests)

    def _execute(self, requests):
        responses = []
        served = []
        for request in requests:
            if request.is_cancelled():  # the client gave up: do not spend the work
                responses.append(cancelled_response())
                continue
            try:
                outputs = postprocess_request(
                    optional_input(request, POSTPROCESS_IN.anomaly_map),
                    optional_input(request, POSTPROCESS_IN.score),
                    self._or_baked(optional_input(request, POSTPROCESS_IN.threshold), self.threshold),
                    optional_input(request, POSTPROCESS_IN.original_size),
                    parse_map_format(optional_input(request, POSTPROCESS_IN.map_format)),
                    optional_input(request, POSTPROCESS_IN.defect_type),
                )
            except RequestError as exc:
                responses.append(error_response(str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            served.append(
                (self._or_baked(optional_input(request, POSTPROCESS_IN.product_id), self.product_id), outputs)
            )
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        if self.metrics is not None:
            self.metrics.record_served(served, self.log_error)
        return responses

    @staticmethod
    def _or_baked(received, baked):
        return received if received is not None else baked
