"""Triton `postprocess`: map, score, threshold (+ defect type) → verdict, regions, original-size map."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils

from adinspect.serving.contracts import POSTPROCESS_IN
from adinspect.serving.steps import RequestError, parse_map_format, postprocess_request


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        pass  # nothing to configure: the threshold arrives with each request from residual_<product>

    def execute(self, requests):
        responses = []
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
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        return responses
