"""Triton `postprocess` (gpu flavour): map, score, threshold (+ defect type) → verdict, regions, map."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils

from adinspect.serving.contracts import POSTPROCESS_IN
from adinspect.serving.monitoring import MONITORING_FILE, open_exporter
from adinspect.serving.steps import RequestError, parse_map_format, postprocess_request


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _family(spec):
    return pb_utils.MetricFamily(spec.name, spec.help, getattr(pb_utils.MetricFamily, spec.kind))


def _log_error(text):
    pb_utils.Logger.log_error(f"postprocess: {text}")


class TritonPythonModel:
    def initialize(self, args):
        # the threshold arrives with each request from residual_<product>; only metrics need a file
        table = Path(args["model_repository"]) / args["model_version"] / MONITORING_FILE
        self.metrics = open_exporter(table, _family, args["model_instance_name"], _log_error)

    def execute(self, requests):
        responses = []
        served = []
        for request in requests:
            if request.is_cancelled():  # the client gave up: do not spend the work
                error = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            try:
                outputs = postprocess_request(
                    _input(request, POSTPROCESS_IN.anomaly_map),
                    _input(request, POSTPROCESS_IN.score),
                    _input(request, POSTPROCESS_IN.threshold),
                    _input(request, POSTPROCESS_IN.original_size),
                    parse_map_format(_input(request, POSTPROCESS_IN.map_format)),
                    _input(request, POSTPROCESS_IN.defect_type),
                )
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            served.append((_input(request, POSTPROCESS_IN.product_id), outputs))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        if self.metrics is not None:
            self.metrics.record_served(served, _log_error)
        return responses
