"""The README's curl examples, run as written (host swapped for the test server's) against a
real `bentoml serve` of the built Bento: the good request answers every application, and the bad
one names exactly the fields the README says it names."""

from __future__ import annotations

import json
import re
import subprocess

from model_artifact.settings import SOURCE_ROOT

README_HOST = "http://127.0.0.1:3000"


def curl_examples() -> list[tuple[str, str]]:
    """(command, the comment lines after it) for every curl command in a bash block."""
    blocks = re.findall(r"```bash\n(.*?)```", (SOURCE_ROOT / "README.md").read_text(), re.S)
    examples = []
    for block in blocks:
        for match in re.finditer(r"^(curl .*?)\n((?:#.*\n)*)", block, re.S | re.M):
            examples.append((match[1], match[2]))
    return examples


def run(command: str, url: str) -> str:
    completed = subprocess.run(
        ["bash", "-c", command.replace(README_HOST, url)],
        cwd=SOURCE_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return completed.stdout


def test_readme_shows_a_good_and_a_bad_request():
    assert len(curl_examples()) == 2


def test_the_good_request_is_answered_for_every_application(server):
    command, _ = curl_examples()[0]
    answer = json.loads(run(command, server.url))
    sent = json.loads((SOURCE_ROOT / "loadtests" / "example_request.json").read_text())
    assert len(answer["results"]) == len(sent["applications"])
    assert {r["decision"] for r in answer["results"]} <= {"approve", "review", "decline"}


def test_the_bad_request_names_the_fields_the_readme_shows(server):
    command, shown = curl_examples()[1]
    answer = json.loads(run(command, server.url))
    documented = [json.loads(loc) for loc in re.findall(r'"loc":(\[[^\]]*\])', shown)]
    assert sorted(map(str, (e["loc"] for e in answer["detail"]))) == sorted(map(str, documented))
