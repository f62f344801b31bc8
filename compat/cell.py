"""Run one scenario with one Python-driven client: ``python -m compat.cell CLIENT SCENARIO BOOTSTRAP``.

Prints one line ``COMPAT-RESULT {"status": ..., "detail": ...}`` with status pass, fail or
na. The runner runs every cell in its own process, under a timeout.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

from compat.clients.common import NotSupported

#: client name → module implementing ``s_<scenario>(bootstrap)`` functions.
PY_CLIENTS = {
    "kafka-python": "compat.clients.kafka_python",
    "confluent-kafka": "compat.clients.confluent",
    "aiokafka": "compat.clients.aiokafka_client",
    "kcat": "compat.clients.kcat",
}

PREFIX = "COMPAT-RESULT "
#: The streams_* scenarios exercise the Kafka Streams library (Java); they run in the kafka-streams column.
STREAMS_NA = "a Kafka Streams scenario (Java library): it runs in the kafka-streams column"


def first_line(e: BaseException) -> str:
    while isinstance(e, SystemError) and e.__cause__ is not None:  # C-extension callback errors
        e = e.__cause__
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else ""
    name = type(e).__name__
    if text.startswith(name):
        return text[:300]
    return f"{name}: {text}"[:300] if text else name


def run(client: str, scenario: str, bootstrap: str) -> dict[str, str]:
    mod = importlib.import_module(PY_CLIENTS[client])
    fn = getattr(mod, "s_" + scenario, None)
    if fn is None and scenario.startswith("compression_") and hasattr(mod, "_compression"):
        # One implementation per client covers every codec: compression_<codec> -> _compression(b, codec).
        codec = scenario.removeprefix("compression_")

        def fn(bootstrap: str) -> object:
            return mod._compression(bootstrap, codec)
    if fn is None and scenario.startswith("sec_") and hasattr(mod, "_security"):
        # One implementation per client covers the security scenarios: sec_<case> -> _security(case)(b).
        fn = mod._security(scenario)
    if fn is None and scenario.startswith("streams_"):
        return {"status": "na", "detail": STREAMS_NA}
    if fn is None:
        return {"status": "na", "detail": f"{client} has no implementation of this feature"}
    try:
        note = fn(bootstrap)
    except NotSupported as e:
        return {"status": "na", "detail": str(e)}
    except BaseException as e:  # any failure of the cell is its result
        traceback.print_exc()
        return {"status": "fail", "detail": first_line(e)}
    return {"status": "pass", "detail": note or ""}


def main() -> int:
    client, scenario, bootstrap = sys.argv[1:4]
    result = run(client, scenario, bootstrap)
    sys.stdout.flush()
    print(PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
