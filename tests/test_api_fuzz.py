"""Schema fuzzing of the REST API with schemathesis: no generated request may get a 5xx.

Every operation in /api/v1/openapi.json gets at least 200 generated requests (Hypothesis
examples), as an admin (every permission, so the requests reach the routes' own code), against
a tiny real model and a real SQLite database. Bounded in time by Hypothesis' settings; the
counts per route are printed (``pytest -s``) and kept in a module global for the assertion.
"""

from __future__ import annotations

from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in requirements-dev.txt")
from api_support import make_api, trained_version
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

pytestmark = pytest.mark.slow
EXAMPLES = 200
COUNTS: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()
KNOWN = {"version": "active", "patient_id": "p-1", "case_id": 1}


@pytest.fixture(scope="module")
def fuzzed_api(tmp_path_factory, tiny_base_model):
    from conftest import make_notes

    from healthmon.config import Settings

    data = tmp_path_factory.mktemp("fuzz") / "data"
    settings = Settings(data_dir=data, base_model=str(tiny_base_model), max_length=64, seed=7)
    api = make_api(settings, trained_version(settings, make_notes()), api_rate_per_minute=1e9)
    # A stored case, so the case routes meet a real id among the generated ones now and then.
    api.client.post("/api/v1/models/active:predict?store=true", headers=api.auth("cli"),
                    json={"instances": [{"text": "polyuria and HbA1c 8.9%", "patient_id": "p-1"}]})
    yield api
    print("\nschemathesis requests per operation:", dict(COUNTS))
    print("statuses:", dict(sorted(STATUSES.items())))


def test_no_generated_request_gets_a_server_error(fuzzed_api):
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzzed_api.client.app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            # Random names almost never hit a served version or a stored patient: every other
            # request uses a real one, so generated bodies reach the model and the report.
            if COUNTS[name] % 2 == 0:
                for key, real in KNOWN.items():
                    if key in (case.path_parameters or {}):
                        case.path_parameters[key] = real
            response = case.call(headers={**(case.headers or {}), **fuzzed_api.auth("ada")})
            COUNTS[name] += 1
            STATUSES[(name, response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(f"{name}: {response.status_code} {response.text[:300]}")

        fuzz()
    assert not failures, failures
    # Hypothesis stops early only when a schema allows fewer distinct requests than asked for.
    thin = {name: n for name, n in COUNTS.items() if n < EXAMPLES}
    assert not thin, f"operations with fewer than {EXAMPLES} generated requests: {thin}"
