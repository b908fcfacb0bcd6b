"""The data converter every hallflow client and worker uses: pydantic models as plain JSON.

One change to temporalio's pydantic converter: a payload that does not match its model is
refused with an ApplicationError (type InvalidPayload) that names each bad field. Inside a
workflow the SDK passes such a failure through, so an Update with a malformed payload is
rejected with that message instead of a bare "Failed decoding arguments".
"""

from typing import Any

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter, DefaultPayloadConverter, JSONPlainPayloadConverter
from temporalio.exceptions import ApplicationError


def describe(err: ValidationError) -> str:
    problems = []
    for e in err.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "payload"
        problems.append(f"{where}: {e['msg']}")
    return "; ".join(problems)


class _ContractJSON(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as err:
            name = getattr(type_hint, "__name__", str(type_hint))
            raise ApplicationError(f"invalid {name}: {describe(err)}", type="InvalidPayload", non_retryable=True) from None


class ContractPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(
            *(
                _ContractJSON() if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=ContractPayloadConverter)
