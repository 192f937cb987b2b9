"""Triton `invad_<model>` (cpu flavour): decode, preprocess and invad.onnx for every product of a
unified package; the product's `postprocess_<product>` step applies its threshold."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import triton_python_backend_utils as pb_utils

from adinspect.contracts import INSPECT_IN, UNIFIED_OUT
from adinspect.geometry import PreprocessSpec
from adinspect.repository.drain import DrainGate
from adinspect.repository.models.triton_utils import (
    optional_input,
    refusal_response,
    triage,
)
from adinspect.repository.steps import Refusal, request_name
from adinspect.repository.unified_steps import UnifiedPipeline, UnifiedRequest
from adinspect.runtime.sessions import make_session

MODEL_FILE = "model.onnx"


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        version = Path(args["model_repository"]) / args["model_version"]
        threads = int(parameters["intra_op_threads"]["string_value"]) or None
        self.pipeline = UnifiedPipeline(
            spec=PreprocessSpec.model_validate_json(parameters["preprocess_spec"]["string_value"]),
            max_pixels=int(parameters["max_pixels"]["string_value"]),
            session=make_session(version / MODEL_FILE, threads),
            max_bytes=int(parameters["max_decode_bytes"]["string_value"]),
        )
        if json.loads(parameters["warmup"]["string_value"]):
            self.pipeline.warm_up()
        # `adinspect serve` drains before it stops the server: batches started before that finish
        # (serve waits for their busy markers), later ones get UNAVAILABLE, which clients retry.
        self.drain = DrainGate()

    def execute(self, requests):
        with self.drain.batch() as draining:
            return self._execute(requests, draining)

    def _execute(self, requests, draining):
        responses, live = triage(requests, draining)
        answers = self.pipeline.run(
            [
                UnifiedRequest(
                    optional_input(requests[i], INSPECT_IN.image_bytes),
                    optional_input(requests[i], INSPECT_IN.image_raw),
                    name=request_name(requests[i].request_id()),
                )
                for i in live
            ]
        )
        for i, answer in zip(live, answers, strict=True):
            if isinstance(answer, Refusal):  # only a message: nothing of the request outlives it
                responses[i] = refusal_response(answer)
            else:
                responses[i] = pb_utils.InferenceResponse(
                    [pb_utils.Tensor(n, answer[n]) for n in UNIFIED_OUT]
                )
        return responses
