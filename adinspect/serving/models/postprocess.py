"""Triton `postprocess`: map, score, threshold (+ defect type) → verdict, regions, original-size map."""

import sys
from pathlib import Path

# `repo build` puts the adinspect library this repository was built with next to this file: the
# Python stub runs its own interpreter, which sees neither PYTHONPATH nor the launcher's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils

from adinspect.serving.contracts import INSPECT_OUT, POSTPROCESS_IN
from adinspect.serving.monitoring import MONITORING_FILE, MetricsExporter
from adinspect.serving.steps import RequestError, parse_map_format, postprocess_request


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _family(spec):
    return pb_utils.MetricFamily(spec.name, spec.help, getattr(pb_utils.MetricFamily, spec.kind))


class TritonPythonModel:
    def initialize(self, args):
        # the threshold arrives with each request from residual_<product>; only metrics need a file
        table = Path(args["model_repository"]) / args["model_version"] / MONITORING_FILE
        self.metrics = None
        if table.is_file():
            try:
                self.metrics = MetricsExporter(table, _family, args["model_instance_name"])
            except Exception as exc:  # without metrics the line still gets its verdicts
                pb_utils.Logger.log_error(f"postprocess: metrics disabled: {exc!r}")

    def execute(self, requests):
        responses = []
        seen = set()
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
            seen.add(self._record(_input(request, POSTPROCESS_IN.product_id), outputs))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        self._publish([p for p in seen if p])
        return responses

    def _record(self, product_id, outputs):
        """Count the verdict in the product's metrics; never lets metrics cost an inspection."""
        if self.metrics is None or product_id is None:
            return None
        score = float(outputs[INSPECT_OUT.score].reshape(-1)[0])
        verdict = bytes(outputs[INSPECT_OUT.verdict].reshape(-1)[0]).decode()
        try:
            return self.metrics.record(int(product_id.reshape(-1)[0]), score, verdict)
        except Exception as exc:  # a metrics failure must not fail the part's inspection
            pb_utils.Logger.log_error(f"postprocess: metrics not recorded: {exc!r}")
            return None

    def _publish(self, products):
        if self.metrics is None or not products:
            return
        try:
            self.metrics.publish(products)
        except Exception as exc:  # as in _record: metrics never fail an inspection
            pb_utils.Logger.log_error(f"postprocess: drift gauges not set: {exc!r}")
