"""The REST API through FastAPI's test client: every route of the core and every refusal.

A tiny real model and a real SQLite database (tests/api_support.py); the CDS Hooks service,
vitals and reports have their own files. Micro-batching is tested with a fake scorer at its seam.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from api_support import make_api, trained_version

from healthmon.api.batching import MicroBatcher
from healthmon.api.state import RateLimiter
from healthmon.model.classifier import Classifier
from healthmon.services import accounts, tokens
from healthmon.storage.models import utcnow

NOTE = "Visit: patient reports polyuria, HbA1c 8.9%, metformin. Follow-up in 3 weeks."
HOSTILE = "glucose 240 mg/dL <script>alert(1)</script> polyuria"


@pytest.fixture()
def api(settings, notes):
    return make_api(settings, trained_version(settings, notes))


def predict(api, who="cli", version="active", **body):
    body = body or {"instances": [{"text": NOTE, "note_id": "n1", "patient_id": "p-7"}]}
    return api.client.post(f"/api/v1/models/{version}:predict", json=body, headers=api.auth(who))


def api_calls(api, who="ada"):
    response = api.client.get("/api/v1/audit", params={"action": "api.call", "limit": 500}, headers=api.auth(who))
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    if status < 500:
        assert body["expected"] and body["found"] and body["fix"]
    for word in words:
        assert word in response.text
    return body


# ----------------------------------------------------------------------------- predict and explain
def test_predict_returns_the_library_calibrated_probabilities(api, settings):
    response = predict(api)
    assert response.status_code == 200, response.text
    body = response.json()
    library = Classifier.from_pretrained(api.version_dir, settings=settings).predict(NOTE)
    [got] = body["predictions"]
    assert body["model_version"] == library.model_version
    assert got["labels"] == list(library.labels)
    assert got["probabilities"].keys() == library.probabilities.keys()
    for label, p in library.probabilities.items():
        assert got["probabilities"][label] == pytest.approx(p, abs=1e-6)
    assert got["note_id"] == "n1" and got["patient_id"] == "p-7" and got["case_id"] is None


def test_predict_store_true_makes_reviewable_cases(api):
    response = predict(api, instances=[{"text": NOTE, "note_id": "n1", "patient_id": "p-7"},
                                       {"text": HOSTILE, "note_id": "n2"}])
    assert all(p["case_id"] is None for p in response.json()["predictions"])
    stored = api.client.post("/api/v1/models/active:predict?store=true", headers=api.auth("cli"),
                             json={"instances": [{"text": NOTE, "note_id": "n1", "patient_id": "p-7"}]}).json()
    case_id = stored["predictions"][0]["case_id"]
    case = api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("ann"))
    assert case.status_code == 200
    assert case.json()["text"] == NOTE and case.json()["patient_id"] == "p-7"
    assert case.json()["probabilities"] == pytest.approx(stored["predictions"][0]["probabilities"])
    listed = api.client.get("/api/v1/cases", params={"view": "recent"}, headers=api.auth("ann")).json()
    assert [(c["case"], c["patient_id"]) for c in listed["cases"]] == [(case_id, "p-7")]
    queue = api.client.get("/api/v1/cases", headers=api.auth("ann")).json()
    assert [(c["case"], c["patient_id"]) for c in queue["cases"]] == [(case_id, "p-7")]
    # The listing shows note excerpts: its audit entry names the patients in it.
    assert any(e["entity"] == "route GET /api/v1/cases" and '"patients": ["p-7"]' in e["after"]
               for e in api_calls(api))


def test_explain_gives_word_spans_delta_and_faithfulness(api):
    response = api.client.post("/api/v1/models/active:explain", headers=api.auth("cli"),
                               json={"instances": [{"text": NOTE, "note_id": "n1"}]})
    assert response.status_code == 200, response.text
    [e] = response.json()["explanations"]
    assert e["note_id"] == "n1" and e["target"] in ("diabetes", "hypertension", "cancer")
    assert {"word", "start", "end", "score"} <= set(e["words"][0])
    assert all(NOTE[w["start"]:w["end"]] == w["word"] for w in e["words"])
    assert isinstance(e["delta"], float) and e["faithfulness"]["trust"]


def test_explain_refuses_a_target_the_version_lacks(api):
    response = api.client.post("/api/v1/models/active:explain", headers=api.auth("cli"),
                               json={"instances": [{"text": NOTE, "target": "gout"}]})
    assert_problem(response, 400, "gout", "diabetes")


def test_models_lists_versions_and_only_admins_promote(api):
    listed = api.client.get("/api/v1/models", headers=api.auth("ann")).json()["versions"]
    assert [v["served"] for v in listed] == [True]
    name = listed[0]["name"]
    assert_problem(api.client.post(f"/api/v1/models/{name}:promote", headers=api.auth("ann")), 403, "annotator")
    assert_problem(api.client.post(f"/api/v1/models/{name}:promote", headers=api.auth("cli")), 403, "clinician")
    assert api.client.post(f"/api/v1/models/{name}:promote", headers=api.auth("ada")).json() == {"active": name}
    assert_problem(api.client.post("/api/v1/models/nope:promote", headers=api.auth("ada")), 404, "nope")


# ----------------------------------------------------------------------------- refusals
def test_no_token_garbage_token_and_healthz(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    no_token = api.client.post("/api/v1/models/active:predict", json={"instances": [{"text": NOTE}]})
    assert_problem(no_token, 401, "Bearer")
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    garbage = api.client.get("/api/v1/cases", headers={"Authorization": "Bearer hm_not-a-token"})
    body = assert_problem(garbage, 401, "unknown or revoked")
    assert "hm_not-a-token" not in str(body)
    for path in ("/readyz", "/metrics", "/api/v1/audit", "/api/v1/models"):
        assert api.client.get(path).status_code == 401


def test_expired_revoked_and_deactivated_tokens_stop_at_once(api):
    expired, _ = tokens.create_token(api.factory, None, "cli", "old", days=1, now=utcnow() - timedelta(days=2))
    assert_problem(api.client.get("/api/v1/cases", headers={"Authorization": f"Bearer {expired}"}), 401, "expired")
    assert predict(api).status_code == 200
    accounts.set_active(api.factory, None, "cli", False)
    assert_problem(predict(api), 401, "deactivated")
    accounts.set_active(api.factory, None, "cli", True)
    assert predict(api).status_code == 200
    tokens.revoke_account_tokens(api.factory, None, "cli")
    assert_problem(predict(api), 401, "revoked")


def test_role_is_read_afresh_and_annotators_cannot_predict_promote_or_read_the_audit(api):
    assert_problem(predict(api, who="ann"), 403, "annotator")
    assert_problem(api.client.get("/api/v1/audit", headers=api.auth("ann")), 403, "audit")
    assert_problem(api.client.get("/api/v1/audit", headers=api.auth("cli")), 403, "audit")
    accounts.set_role(api.factory, None, "ann", "clinician")
    assert predict(api, who="ann").status_code == 200


@pytest.mark.parametrize("body, where", [
    ({}, "instances"),
    ({"instances": [{"text": ""}]}, "instances.0.text"),
    ({"instances": [{"txt": NOTE}]}, "instances.0"),
    ({"instances": [{"text": NOTE}], "extra": 1}, "extra"),
    ({"instances": "a note"}, "instances"),
])
def test_bad_bodies_are_422_problems_naming_the_field_without_echoing_it(api, body, where):
    response = api.client.post("/api/v1/models/active:predict", json=body, headers=api.auth("cli"))
    problem = assert_problem(response, 422, where)
    assert "a note" not in problem["found"]


def test_a_body_that_is_not_json_is_a_422_problem(api):
    response = api.client.post("/api/v1/models/active:predict", content=b"text=hello",
                               headers={**api.auth("cli"), "content-type": "application/json"})
    assert_problem(response, 422)


def test_oversized_body_and_too_many_instances_are_413(settings, notes):
    api = make_api(settings, trained_version(settings, notes), api_max_body_mb=0.01, api_max_instances=2)
    big = {"instances": [{"text": "x" * 20_000}]}
    assert_problem(api.client.post("/api/v1/models/active:predict", json=big, headers=api.auth("cli")), 413,
                   "HEALTHMON_API_MAX_BODY_MB")
    # A streamed (chunked) body declares no length: counted as it arrives, refused at the limit.
    def chunks():
        yield b'{"instances": [{"text": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}]}'

    for path in ("/api/v1/models/active:predict", "/cds-services/healthmon-risk", "/api/v1/vitals:score"):
        streamed = api.client.post(path, content=chunks(), headers={**api.auth("cli"),
                                                                    "content-type": "application/json"})
        assert_problem(streamed, 413, "HEALTHMON_API_MAX_BODY_MB")
    three = {"instances": [{"text": NOTE}] * 3}
    assert_problem(api.client.post("/api/v1/models/active:predict", json=three, headers=api.auth("cli")), 413,
                   "at most 2 instances")


def test_unknown_version_is_404_naming_the_known_ones(api):
    problem = assert_problem(predict(api, version="v-does-not-exist"), 404, "v-does-not-exist")
    assert "active" in problem["fix"] and api.version_dir.name in problem["fix"]


def test_review_conflict_is_409_carrying_the_newer_label(api):
    stored = api.client.post("/api/v1/models/active:predict?store=true", headers=api.auth("cli"),
                             json={"instances": [{"text": NOTE, "patient_id": "p-7"}]}).json()
    case_id = stored["predictions"][0]["case_id"]
    seen = api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("ann")).json()["review_version"]
    first = api.client.post(f"/api/v1/cases/{case_id}/reviews", headers=api.auth("cli"),
                            json={"labels": ["diabetes"], "seen_version": seen})
    assert first.status_code == 201 and first.json()["review_version"] == seen + 1
    late = api.client.post(f"/api/v1/cases/{case_id}/reviews", headers=api.auth("ann"),
                           json={"labels": ["cancer"], "seen_version": seen})
    problem = assert_problem(late, 409, "diabetes")
    assert problem["current_labels"] == ["diabetes"] and problem["current_version"] == seen + 1
    assert_problem(api.client.post("/api/v1/cases/999/reviews", headers=api.auth("ann"),
                                   json={"labels": ["cancer"], "seen_version": 0}), 404)
    assert_problem(api.client.get("/api/v1/cases/999", headers=api.auth("ann")), 404)


def test_rate_limit_answers_429_with_retry_after(settings, notes):
    api = make_api(settings, trained_version(settings, notes), api_rate_per_minute=3)
    codes = [api.client.get("/api/v1/cases", headers=api.auth("ann")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = api.client.get("/api/v1/cases", headers=api.auth("ann"))
    assert_problem(refused, 429, "HEALTHMON_API_RATE_PER_MINUTE")
    assert int(refused.headers["retry-after"]) >= 1
    assert api.client.get("/api/v1/cases", headers=api.auth("cli")).status_code == 200  # per token


def test_rate_limiter_refills_at_its_rate():
    limiter = RateLimiter(60)  # one a second, bursts of 60
    assert all(limiter.allow("t", now=0.0) == 0 for _ in range(60))
    assert limiter.allow("t", now=0.0) == pytest.approx(1.0)
    assert limiter.allow("t", now=1.0) == 0


def test_internal_error_is_500_with_an_incident_id_and_no_patient_text(api, caplog):
    model = api.state.model(api.version_dir)

    def broken(texts):
        raise RuntimeError(f"tensor trouble in {texts[0]}")

    model.batcher.score = broken
    response = predict(api, instances=[{"text": HOSTILE, "patient_id": "p-9"}])
    body = assert_problem(response, 500)
    assert len(body["incident"]) == 12 and "script" not in response.text and "glucose" not in response.text
    assert body["incident"] in caplog.text  # the details are in the server log under that id


# ----------------------------------------------------------------------------- audit, metrics, readiness
def test_every_call_is_audited_with_who_route_and_patients(api):
    predict(api)
    predict(api, who="ann")
    entries = api_calls(api)
    assert [(e["actor"], e["entity"]) for e in entries[::-1]] == [
        ("cli", "route POST /api/v1/models/{version}:predict"),
        ("ann", "route POST /api/v1/models/{version}:predict"),
    ]
    assert '"patients": ["p-7"]' in entries[1]["after"] and '"status": 200' in entries[1]["after"]
    assert '"status": 403' in entries[0]["after"]


def test_metrics_count_requests_predictions_and_the_queue(api):
    predict(api)
    predict(api, who="ann")
    text = api.client.get("/metrics", headers=api.auth("ada")).text
    route = 'route="/api/v1/models/{version}:predict"'
    assert f'healthmon_http_requests_total{{method="POST",{route},status="200"}} 1.0' in text
    assert f'healthmon_http_requests_total{{method="POST",{route},status="403"}} 1.0' in text
    assert "healthmon_http_request_duration_seconds_bucket" in text
    label = predict(api).json()["predictions"][0]["labels"][0]
    text = api.client.get("/metrics", headers=api.auth("ada")).text
    assert f'healthmon_predictions_total{{label="{label}"}} 2.0' in text
    assert 'healthmon_job_queue_depth{state="queued"} 0.0' in text
    assert f'healthmon_served_model_info{{version="{api.version_dir.name}"}} 1.0' in text


def test_readyz_loads_the_served_model_and_reports_the_schema(api):
    body = api.client.get("/readyz", headers=api.auth("ann")).json()
    assert body["status"] == "ready" and body["current"] and body["model"]["version"] == api.version_dir.name
    assert body["revision"] == body["head"]


def test_openapi_lists_every_route_with_its_schemas(api):
    doc = api.client.get("/api/v1/openapi.json").json()
    assert set(doc["paths"]) >= {"/models", "/models/{version}:predict", "/models/{version}:explain",
                                 "/models/{version}:promote", "/cases", "/cases/{case_id}",
                                 "/cases/{case_id}/reviews", "/audit"}
    predict_op = doc["paths"]["/models/{version}:predict"]["post"]
    assert predict_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictRequest")
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# ----------------------------------------------------------------------------- micro-batching (fake scorer at the seam)
def _batched(max_batch: int, wait_s: float, requests: int) -> tuple[list[list[str]], list[list[str]]]:
    calls: list[list[str]] = []
    lock = threading.Lock()

    def score(texts: list[str]) -> list[str]:
        time.sleep(0.02)  # a model call takes a while: requests pile up behind it
        with lock:
            calls.append(list(texts))
        return [t.upper() for t in texts]

    batcher = MicroBatcher(score, ThreadPoolExecutor(1), max_batch=max_batch, wait_s=wait_s)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit([f"note {i}"]) for i in range(requests)))

    return asyncio.run(main()), calls


def test_concurrent_requests_share_batches_and_each_gets_its_own_result():
    results, calls = _batched(max_batch=8, wait_s=0.01, requests=32)
    assert results == [[f"NOTE {i}"] for i in range(32)]
    assert len(calls) == 4 and all(len(c) == 8 for c in calls)


def test_batching_off_scores_every_request_alone():
    results, calls = _batched(max_batch=8, wait_s=0.0, requests=10)
    assert results == [[f"NOTE {i}"] for i in range(10)]
    assert len(calls) == 10


def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_runs():
    def score(texts):
        if any("bad" in t for t in texts):
            raise ValueError("bad batch")
        return texts

    batcher = MicroBatcher(score, ThreadPoolExecutor(1), max_batch=4, wait_s=0.05)

    async def main():
        first = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["ok"]), return_exceptions=True)
        second = await batcher.submit(["fine"])
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in first) and second == ["fine"]


def test_a_review_with_a_label_no_version_knows_or_two_labels_on_a_single_label_case_is_refused(api):
    stored = api.client.post("/api/v1/models/active:predict?store=true", headers=api.auth("cli"),
                             json={"instances": [{"text": NOTE}]}).json()
    case_id = stored["predictions"][0]["case_id"]
    assert_problem(api.client.post(f"/api/v1/cases/{case_id}/reviews", headers=api.auth("ann"),
                                   json={"labels": ["zzz"], "seen_version": 0}), 400, "zzz", "diabetes")
    assert_problem(api.client.post(f"/api/v1/cases/{case_id}/reviews", headers=api.auth("ann"),
                                   json={"labels": ["cancer", "diabetes"], "seen_version": 0}), 400, "exactly one")
    assert api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("ann")).json()["review_version"] == 0


def test_readyz_is_503_saying_why_when_no_model_can_be_served(settings, tmp_path):
    api = make_api(settings, tmp_path / "no-such-version")
    response = api.client.get("/readyz", headers=api.auth("ann"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["database"] and body["current"]
    assert body["model"]["loaded"] is False and "demo" in body["model"]["error"]


def test_the_audit_buffer_flush_waits_only_for_entries_added_before_it(api):
    for _ in range(3):
        api.state.audit.add("cli", "GET /x", 200, ["p-1"])
    assert api.state.audit.flush(timeout_s=10)
    entries = api_calls(api)
    assert sum(e["entity"] == "route GET /x" for e in entries) == 3


def test_the_model_thread_runs_queued_predict_batches_before_queued_explanations():
    from healthmon.api.batching import ModelThread

    thread, order, gate = ModelThread(), [], threading.Event()
    running = thread.submit(gate.wait)  # an explanation already running: nothing overtakes it
    queued = [thread.submit(order.append, f"explain {i}") for i in range(3)]
    urgent = thread.submit_urgent(order.append, "predict")
    gate.set()
    for future in (running, *queued, urgent):
        future.result(timeout=10)
    assert order == ["predict", "explain 0", "explain 1", "explain 2"]
    failing = thread.submit_urgent(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)


def test_refused_tokens_are_audited_and_an_address_that_keeps_sending_them_is_slowed(api):
    from healthmon.api.state import FAILED_AUTH_PER_MINUTE

    refused = api.client.get("/api/v1/cases", headers={"Authorization": "Bearer hm_guess-0001"})
    assert refused.status_code == 401
    [entry] = [e for e in api_calls(api) if e["actor"] == "(no valid token)"]
    assert entry["entity"] == "route GET /api/v1/cases"
    assert '"status": 401' in entry["after"] and '"token_prefix": "hm_guess"' in entry["after"]
    assert "hm_guess-0001" not in entry["after"]  # never the whole token
    for n in range(FAILED_AUTH_PER_MINUTE - 1):
        api.client.get("/api/v1/cases", headers={"Authorization": f"Bearer hm_guess-{n:04d}"})
    # The address has used its refusals: even a good token waits, answered before any lookup.
    slowed = api.client.get("/api/v1/cases", headers=api.auth("ann"))
    assert_problem(slowed, 429, "refused tokens")
    assert int(slowed.headers["retry-after"]) >= 1
