"""Triton `preprocess`: encoded image bytes or raw uint8 HWC → normalised tensor + original size."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from adinspect.contracts import INSPECT_IN, PREPROCESS_OUT
from adinspect.geometry import PreprocessSpec
from adinspect.repository.drain import DrainGate
from adinspect.repository.models.triton_utils import (
    cancelled_response,
    draining_response,
    error_response,
    optional_input,
)
from adinspect.repository.steps import RequestError, preprocess_request, request_name


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.spec = PreprocessSpec.model_validate_json(parameters["preprocess_spec"]["string_value"])
        self.max_pixels = int(parameters["max_pixels"]["string_value"])
        self.max_bytes = int(parameters["max_decode_bytes"]["string_value"])
        if json.loads(parameters["warmup"]["string_value"]):  # the decoder and numpy, before traffic
            preprocess_request(None, np.zeros((1, 64, 64, 3), np.uint8), self.spec, name="warm-up")
        # `adinspect serve` drains before it stops the server: batches started before that finish
        # (serve waits for their busy markers), later ones get UNAVAILABLE, which clients retry.
        self.drain = DrainGate()

    def execute(self, requests):
        with self.drain.batch() as draining:
            return self._execute(requests, draining)

    def _execute(self, requests, draining):
        responses = []
        for request in requests:
            if draining or request.is_cancelled():
                responses.append(draining_response() if draining else cancelled_response())
                continue
            try:
                image, size = preprocess_request(
                    optional_input(request, INSPECT_IN.image_bytes),
                    optional_input(request, INSPECT_IN.image_raw),
                    self.spec,
                    self.max_pixels,
                    name=request_name(request.request_id()),
                    max_bytes=self.max_bytes,
                )
            except RequestError as exc:
                responses.append(error_response(str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            outputs = [
                pb_utils.Tensor(PREPROCESS_OUT.image, image),
                pb_utils.Tensor(PREPROCESS_OUT.original_size, size),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
