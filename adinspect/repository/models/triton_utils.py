"""What the Python-backend `model.py` files share; imported only inside Triton's Python stub."""

import triton_python_backend_utils as pb_utils

from adinspect.repository.drain import DRAINING_MESSAGE


def optional_input(request, name):
    """The request's input `name` as numpy, or None when it was not sent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def metric_family(spec):
    """A `monitoring.MetricSpec` as one of Triton's custom metric families."""
    return pb_utils.MetricFamily(spec.name, spec.help, getattr(pb_utils.MetricFamily, spec.kind))


def error_response(text, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(text, code))


def cancelled_response():
    """The answer to a request its client gave up on: no work is spent on it."""
    return error_response("request cancelled", pb_utils.TritonError.CANCELLED)


def error_logger(model):
    """A `log_error(text)` that prefixes the model's name (for metrics that must never raise)."""
    return lambda text: pb_utils.Logger.log_error(f"{model}: {text}")


def draining_response():
    """The answer while `adinspect serve` drains (SIGTERM): UNAVAILABLE, which clients retry."""
    return error_response(DRAINING_MESSAGE, pb_utils.TritonError.UNAVAILABLE)


def refusal_response(refusal):
    """A `steps.Refusal` (message and gRPC status name) as a per-request error."""
    codes = {
        "INVALID_ARGUMENT": pb_utils.TritonError.INVALID_ARG,
        "CANCELLED": pb_utils.TritonError.CANCELLED,
    }
    return error_response(refusal.message, codes[refusal.code])


def triage(requests, draining):
    """(responses, live): UNAVAILABLE for every request while draining, CANCELLED for those whose
    client gave up (no work spent on them), None in `responses` and an index in `live` for the rest."""
    responses = [None] * len(requests)
    live = []
    for i, request in enumerate(requests):
        if draining:
            responses[i] = draining_response()
        elif request.is_cancelled():
            responses[i] = cancelled_response()
        else:
            live.append(i)
    return responses, live
