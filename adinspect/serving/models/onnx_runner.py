"""Triton `backbone` / `residual_<product>` (cpu flavour): ONNX Runtime over the batch Triton formed."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from adinspect.runtime.sessions import make_session
from adinspect.serving.steps import OnnxStep


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        threads = int(config["parameters"]["intra_op_threads"]["string_value"]) or None
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.step = OnnxStep(
            session=make_session(path, threads=threads),
            inputs=tuple(item["name"] for item in config["input"]),
            outputs={item["name"]: tuple(item["dims"]) for item in config["output"]},
        )

    def execute(self, requests):
        # Cancelled requests (the client gave up) are answered at once and left out of the batch.
        live = [i for i, request in enumerate(requests) if not request.is_cancelled()]
        cancelled = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
        responses = [pb_utils.InferenceResponse(error=cancelled) for _ in requests]
        if not live:
            return responses
        feeds = [
            {
                name: pb_utils.get_input_tensor_by_name(requests[i], name).as_numpy()
                for name in self.step.inputs
            }
            for i in live
        ]
        asked = [list(requests[i].requested_output_names()) or list(self.step.outputs) for i in live]
        wanted = sorted({name for names in asked for name in names})
        results = self.step.run(feeds, wanted)
        for i, out, names in zip(live, results, asked, strict=True):
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[name])) for name in names]
            responses[i] = pb_utils.InferenceResponse(tensors)
        return responses
