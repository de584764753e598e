"""Against a real `bentoml serve` of the built Bento: good answers, every class of bad input
answered 4xx naming the field (those tests run against the Bento's image too, read-only, as
users deploy it), lineage, metrics, zero errors under concurrency."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import bentoml
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from strategies import invalid_records

from loadtests.load.burst import burst

JSON = {"content-type": "application/json"}


def post(server, body, headers=JSON) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{server.url}/score", data=data, headers=headers, timeout=10)


def test_good_request_is_scored_by_the_promoted_model(server, champion, make_record):
    _, _, report = champion
    response = post(
        server, {"applications": [make_record(request_id="e2e-1"), make_record(home=None)]}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["request_id"] == "e2e-1"
    assert {r["model_tag"] for r in results} == {report.bento_model_tag}
    assert all(r["decision"] in {"approve", "review", "decline"} for r in results)


BAD_INPUTS = [
    # (name, body, status, location that must be named)
    ("wrong_type", {"applications": [{"age": [30]}]}, 400, ["applications", 0, "age"]),
    ("string_in_number", {"applications": [{"amount": "800"}]}, 400, ["applications", 0, "amount"]),
    ("nan_literal", '{"applications":[{"expenses":NaN}]}', 400, ["applications", 0, "expenses"]),
    ("inf_literal", '{"applications":[{"price":Infinity}]}', 400, ["applications", 0, "price"]),
    ("huge_number", '{"applications":[{"price":1e400}]}', 400, ["applications", 0, "price"]),
    ("huge_integer", {"applications": [{"age": 10**30}]}, 400, ["applications", 0, "age"]),
    ("missing_required", {"applications": [{"age": ...}]}, 400, ["applications", 0, "age"]),
    ("extra_field", {"applications": [{"colour": "red"}]}, 400, ["applications", 0, "colour"]),
    ("unknown_category", {"applications": [{"home": "castle"}]}, 400, ["applications", 0, "home"]),
    ("out_of_range", {"applications": [{"age": 12}]}, 400, ["applications", 0, "age"]),
    ("empty_batch", {"applications": []}, 400, ["applications"]),
    ("oversized_batch", {"applications": [{}] * 257}, 400, ["applications"]),
    ("missing_applications", {}, 400, ["applications"]),
    ("non_json_body", "applications=1", 400, []),
    ("json_not_object", "[1, 2]", 400, []),
]


def materialise(body, make_record):
    """Bodies above list only the broken fields; fill in a valid record around them."""
    if not isinstance(body, dict) or "applications" not in body:
        return body
    if (
        isinstance(body["applications"], list)
        and body["applications"]
        and body["applications"][0] == {}
    ):
        return {"applications": [make_record()] * len(body["applications"])}
    return {"applications": [make_record(**item) for item in body["applications"]]}


def test_bentomls_own_client_scores_through_the_asgi_endpoint(server, make_record):
    """`/score` is answered in front of BentoML's route (api/score_handler.py); BentoML's
    client still finds the route in /schema.json and gets the same answers and errors."""
    with bentoml.SyncHTTPClient(server.url) as client:
        answer = client.score(applications=[make_record(request_id="client-1")])
        with pytest.raises(bentoml.exceptions.BentoMLException, match="age"):
            client.score(applications=[make_record(age=-1)])
    assert answer["results"][0]["request_id"] == "client-1"  # the JSON, as the client decodes it


@pytest.mark.parametrize(
    ("name", "body", "status", "loc"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_each_class_of_bad_input_gets_a_4xx_naming_the_field(
    served, make_record, name, body, status, loc
):
    if isinstance(body, str) and body.startswith('{"applications":[{'):
        record = json.dumps(make_record())[:-1]  # splice the raw literal into a valid record
        body = body.replace("[{", "[" + record + ", ", 1)
    response = post(served, materialise(body, make_record))
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert any(error["loc"][: len(loc)] == loc for error in detail), detail
    assert all(error["msg"] for error in detail)


def test_several_bad_items_each_report_their_index(served, make_record):
    body = {"applications": [make_record(age="x"), make_record(), make_record(job="astronaut")]}
    response = post(served, body)
    assert response.status_code == 400
    assert {tuple(e["loc"][:3]) for e in response.json()["detail"]} == {
        ("applications", 0, "age"),
        ("applications", 2, "job"),
    }


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ],
)
def test_wrong_content_type_is_refused(served, make_record, headers, status):
    response = post(served, {"applications": [make_record()]}, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == ["header", "content-type"]


@pytest.mark.parametrize("megabytes", [2, 4])
@pytest.mark.parametrize("client", ["requests", "urllib"])
def test_an_oversized_body_gets_a_413_the_client_can_read(served, make_record, megabytes, client):
    """20,000 applications (~4 MB) from clients that write the whole body before they read:
    the 413 and its reason, never "Connection reset by peer"."""
    count = megabytes * 5_000
    body = json.dumps({"applications": [make_record()] * count}).encode()
    assert len(body) > megabytes * 1_000_000
    if client == "requests":
        response = post(served, body)
        status, answer = response.status_code, response.json()
    else:
        request = urllib.request.Request(f"{served.url}/score", data=body, headers=JSON)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        status, answer = refused.value.code, json.loads(refused.value.read())
    assert status == 413
    assert answer["detail"][0]["type"] == "body_too_large"
    assert "larger than 1048576 bytes" in answer["error"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=invalid_records())
def test_any_invalid_application_gets_a_4xx(server, case):
    record, _ = case
    response = post(server, json.dumps({"applications": [record]}, allow_nan=True))
    assert 400 <= response.status_code < 500, response.text


def test_model_contract_health_and_metrics_endpoints(server, champion):
    _, result, report = champion
    model = requests.get(f"{server.url}/model", timeout=10).json()
    assert model["model_tag"] == report.bento_model_tag
    assert model["labels"]["mlflow_run_id"] == result.run_id
    assert model["runner"]["device"] == "cpu"
    assert requests.get(f"{server.url}/contract", timeout=10).json()["version"] == "1.0.0"
    assert requests.get(f"{server.url}/livez", timeout=10).status_code == 200
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert "bentoml_service_request_total" in metrics or "request_total" in metrics


def test_zero_errors_under_concurrency_past_the_session_renewal_point(server, make_record):
    """16 concurrent connections, 1,200 requests: far past BentoML's 100-request client-session
    renewal that used to drop in-flight runner calls (see runners/service.py)."""
    body = json.dumps({"applications": [make_record()]}).encode()
    result = burst(f"{server.url}/score", body, connections=16, per_connection=75)
    assert result.outcomes == {"200": 1200}


def test_api_workers_never_load_torch_when_a_runner_scores(server):
    """The card's split: the model (and torch, ~1 GB of address space and its thread pools)
    lives in the runner's workers; the API's workers resolve the model refs and read the
    bundle, but never import torch."""

    def loads_torch(process) -> bool:
        return any("libtorch" in region.path for region in process.memory_maps())

    api, runner = server.workers("credit_risk_api"), server.workers("credit_risk_runner")
    assert api
    assert runner
    assert all(loads_torch(worker) for worker in runner)
    assert not any(loads_torch(worker) for worker in api)
