"""Triton `inspect_<product>` (cpu flavour): the whole inspection in one Python-backend model."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import triton_python_backend_utils as pb_utils

from adinspect.contracts import INSPECT_IN, INSPECT_OUT, RESIDUAL_OUT
from adinspect.geometry import PreprocessSpec
from adinspect.repository.drain import DrainGate
from adinspect.repository.models.triton_utils import (
    error_logger,
    metric_family,
    optional_input,
    refusal_response,
    triage,
)
from adinspect.repository.monitoring import MONITORING_FILE, open_exporter
from adinspect.repository.steps import ProductPipeline, ProductRequest, Refusal, request_name
from adinspect.runtime.sessions import make_session

BACKBONE_FILE, RESIDUAL_FILE, SEG_FILE = "backbone.onnx", "model.onnx", "seg.onnx"


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        version = Path(args["model_repository"]) / args["model_version"]
        threads = int(parameters["intra_op_threads"]["string_value"]) or None
        seg = version / SEG_FILE
        self.pipeline = ProductPipeline(
            spec=PreprocessSpec.model_validate_json(parameters["preprocess_spec"]["string_value"]),
            max_pixels=int(parameters["max_pixels"]["string_value"]),
            max_bytes=int(parameters["max_decode_bytes"]["string_value"]),
            backbone=make_session(version / BACKBONE_FILE, threads),
            residual=make_session(version / RESIDUAL_FILE, threads),
            seg=make_session(seg, threads) if seg.is_file() else None,
        )
        if json.loads(parameters["warmup"]["string_value"]):
            self.pipeline.warm_up()  # here, not as Triton warm-up requests, which metrics would count
        # `adinspect serve` drains before it stops the server: batches started before that finish
        # (serve waits for their busy markers), later ones get UNAVAILABLE, which clients retry.
        self.drain = DrainGate()
        table = version / MONITORING_FILE
        self.log_error = error_logger(args["model_name"])
        self.metrics = open_exporter(table, metric_family, args["model_instance_name"], self.log_error)

    def execute(self, requests):
        with self.drain.batch() as draining:
            return self._execute(requests, draining)

    def _execute(self, requests, draining):
        responses, live = triage(requests, draining)
        answers = self.pipeline.run(
            [
                ProductRequest(
                    optional_input(requests[i], INSPECT_IN.image_bytes),
                    optional_input(requests[i], INSPECT_IN.image_raw),
                    optional_input(requests[i], INSPECT_IN.map_format),
                    name=request_name(requests[i].request_id()),
                    cancelled=requests[i].is_cancelled,
                )
                for i in live
            ]
        )
        served = []
        for i, answer in zip(live, answers, strict=True):  # Refusals (CANCELLED included) are not served
            if isinstance(answer, Refusal):  # only a message: nothing of the request outlives it
                responses[i] = refusal_response(answer)
                continue
            served.append((answer[RESIDUAL_OUT.product_id], answer))
            responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor(n, answer[n]) for n in INSPECT_OUT])
        if self.metrics is not None:
            self.metrics.record_served(served, self.log_error)
        return responses
