"""Score a CSV or Parquet file offline with the served model, through the same contract,
features, torch core and business rules as the online path.

    python -m runners.batch_score applications.csv scored.csv [--rejects rejects.csv]

Rows that break the contract do not fail the file: they go to the rejects file with the row
number, the field and the reason, and every other row is scored.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import bentoml
import pandas as pd
from pydantic import ValidationError

from credit_risk.config import DecisionThresholds, Settings
from credit_risk.contract import Application
from credit_risk.decision import decide
from credit_risk.records import records_from_frame
from runners.loaded_model import LoadedModel
from runners.torch_core import select_device

CHUNK_ROWS = 8192


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    scored: int
    rejected: int


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def validate_rows(
    frame: pd.DataFrame,
) -> tuple[list[int], list[Application], list[dict[str, object]]]:
    """Row numbers and applications that pass the contract, and one reject line per error."""
    rows: list[int] = []
    applications: list[Application] = []
    rejects: list[dict[str, object]] = []
    for row, record in enumerate(records_from_frame(frame)):
        try:
            applications.append(Application.model_validate(record))
            rows.append(row)
        except ValidationError as error:
            rejects += [
                {
                    "row": row,
                    "field": ".".join(str(part) for part in e["loc"]) or "<row>",
                    "reason": e["msg"],
                }
                for e in error.errors()
            ]
    return rows, applications, rejects


def score_frame(
    frame: pd.DataFrame, model: LoadedModel, thresholds: DecisionThresholds
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, rejects) for one table; results keep the input row number."""
    rows, applications, rejects = validate_rows(frame)
    probabilities: list[float] = []
    for start in range(0, len(applications), CHUNK_ROWS):
        chunk = applications[start : start + CHUNK_ROWS]
        scores = model.score_records([a.model_dump() for a in chunk])
        probabilities += scores.tolist()
    verdicts = [decide(p, a, thresholds) for p, a in zip(probabilities, applications, strict=True)]
    results = pd.DataFrame(
        {
            "row": rows,
            "request_id": [
                a.request_id or f"row-{r}" for a, r in zip(applications, rows, strict=True)
            ],
            "probability_default": probabilities,
            "decision": [v.decision for v in verdicts],
            "reasons": ["|".join(v.reasons) for v in verdicts],
            "model_tag": model.tag,
        }
    )
    return results, pd.DataFrame(rejects, columns=["row", "field", "reason"])


def load_served_model(settings: Settings) -> LoadedModel:
    stored = bentoml.models.get(settings.served_model_tag())
    return LoadedModel.from_bento_model(stored, select_device(settings.runner_device))


def score_file(source: Path, output: Path, rejects_path: Path, settings: Settings) -> BatchSummary:
    frame = read_table(source)
    results, rejects = score_frame(frame, load_served_model(settings), settings.decision)
    write_table(results, output)
    write_table(rejects, rejects_path)
    return BatchSummary(rows=len(frame), scored=len(results), rejected=rejects["row"].nunique())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.batch_score", description=__doc__)
    parser.add_argument("input", type=Path, help="CSV or Parquet file of applications")
    parser.add_argument("output", type=Path, help="scored rows (.csv or .parquet)")
    parser.add_argument("--rejects", type=Path, help="refused rows (default: OUTPUT.rejects.csv)")
    args = parser.parse_args(argv)
    rejects = args.rejects or args.output.with_suffix(".rejects.csv")
    summary = score_file(args.input, args.output, rejects, Settings())
    print(
        f"rows={summary.rows} scored={summary.scored} rejected={summary.rejected} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
