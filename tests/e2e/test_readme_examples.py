"""The README's curl examples, run as written (host swapped for the test server's) against a
real `bentoml serve` of the built Bento and against its image run read-only (`podman run
--read-only`): the good request answers every application, and the bad one names exactly the
fields the README says it names."""

from __future__ import annotations

import json
import re
import subprocess

from model_artifact.settings import SOURCE_ROOT

README_HOST = "http://127.0.0.1:3000"


def curl_examples() -> tuple[list[str], list[str]]:
    """Every curl command in a bash block, and the comment lines shown after each."""
    blocks = re.findall(r"```bash\n(.*?)```", (SOURCE_ROOT / "README.md").read_text(), re.S)
    examples: list[tuple[list[str], list[str]]] = []
    for line in (line for block in blocks for line in block.splitlines()):
        if line.startswith("curl "):
            examples.append(([line], []))
        elif examples and line.startswith("#"):
            examples[-1][1].append(line)
        elif examples and not examples[-1][1]:  # the command goes on
            examples[-1][0].append(line)
    return ["\n".join(command) for command, _ in examples], ["\n".join(c) for _, c in examples]


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
    commands, shown = curl_examples()
    assert len(commands) == len(shown) == 2


def test_the_good_request_is_answered_for_every_application(served):
    command = curl_examples()[0][0]
    answer = json.loads(run(command, served.url))
    sent = json.loads((SOURCE_ROOT / "loadtests" / "example_request.json").read_text())
    assert len(answer["results"]) == len(sent["applications"])
    assert {r["decision"] for r in answer["results"]} <= {"approve", "review", "decline"}
    # by default a decline, and only a decline, carries its principal reasons
    assert all(
        (1 <= len(r["principal_reasons"]) <= 4) == (r["decision"] == "decline")
        for r in answer["results"]
    )
    shown = curl_examples()[1][0]
    assert '"decision":"decline"' in shown
    assert '"principal_reasons"' in shown


def test_the_bad_request_names_the_fields_the_readme_shows(served):
    commands, comments = curl_examples()
    answer = json.loads(run(commands[1], served.url))
    documented = [json.loads(loc) for loc in re.findall(r'"loc":(\[[^\]]*\])', comments[1])]
    assert sorted(map(str, (e["loc"] for e in answer["detail"]))) == sorted(map(str, documented))
