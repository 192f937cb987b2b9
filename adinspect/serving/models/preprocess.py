"""Triton `preprocess`: encoded image bytes or raw uint8 HWC → normalised tensor + original size."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import triton_python_backend_utils as pb_utils

from adinspect.runtime.preprocess import PreprocessSpec
from adinspect.serving.contracts import INSPECT_IN, PREPROCESS_OUT
from adinspect.serving.steps import RequestError, preprocess_request


def _optional_input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.spec = PreprocessSpec.model_validate_json(parameters["preprocess_spec"]["string_value"])
        self.max_pixels = int(parameters["max_pixels"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image, size = preprocess_request(
                    _optional_input(request, INSPECT_IN.image_bytes),
                    _optional_input(request, INSPECT_IN.image_raw),
                    self.spec,
                    self.max_pixels,
                    name=f"request {request.request_id() or '(no id)'}",
                )
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            outputs = [
                pb_utils.Tensor(PREPROCESS_OUT.image, image),
                pb_utils.Tensor(PREPROCESS_OUT.original_size, size),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
