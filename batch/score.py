"""Score a CSV or Parquet file offline with the served model, through the same contract,
features, torch scorer and business rules as the online path.

    python -m batch.score applications.csv scored.csv [--rejects rejects.csv]

Rows that break the contract do not fail the file: they go to the rejects file with the row
number, the field and the reason, and every other row is scored.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from credit_risk.decision import VERDICTS, DecisionThresholds, verdict_codes
from credit_risk.features import RawColumns
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonCoder, ReasonSettings
from credit_risk.table_contract import validate_table
from model_artifact.champion import load_served_model
from model_artifact.loaded_model import LoadedModel
from model_artifact.settings import RegistrySettings
from model_artifact.torch_scorer import select_device

CHUNK_ROWS = 8192  # bounds the feature block's memory on large files
# Output columns as categoricals over the verdict table: no per-row strings are built.
DECISION_NAMES = list(dict.fromkeys(verdict.decision for verdict in VERDICTS))
DECISION_OF_VERDICT = np.array([DECISION_NAMES.index(verdict.decision) for verdict in VERDICTS])
REASONS = ["|".join(verdict.reasons) for verdict in VERDICTS]


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


def score_chunk(
    raw: RawColumns,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    coder: ReasonCoder | None,
    explain_all: bool,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Probabilities, verdict codes and principal reasons (one cell each) for one chunk."""
    matrix = raw_to_matrix(raw, model.bundle.feature_params)
    probabilities = model.scorer.predict(matrix)
    codes = verdict_codes(probabilities, raw, thresholds)
    if coder is None:
        return probabilities, codes, [""] * len(codes)
    rows = coder.rows_to_explain([VERDICTS[c].decision for c in codes.tolist()], explain_all)
    attributions = model.attribute(matrix[rows]) if rows.size else matrix[:0]
    return probabilities, codes, coder.cells(len(codes), rows, attributions)


def score_frame(
    frame: pd.DataFrame,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    reasons: ReasonSettings | None = None,
    explain_all: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, rejects) for one table; results keep the input row number. Principal reasons
    come from the model as online: for adverse decisions, or every row with ``explain_all``."""
    table = validate_table(frame)
    coder = None
    if model.bundle.baseline is not None:
        coder = ReasonCoder(model.bundle.feature_params.feature_names, reasons or ReasonSettings())
    chunks = [
        score_chunk(
            {f: c[start : start + CHUNK_ROWS] for f, c in table.raw.items()},
            model,
            thresholds,
            coder,
            explain_all,
        )
        for start in range(0, len(table.rows), CHUNK_ROWS)
    ]
    probabilities = np.concatenate([c[0] for c in chunks] or [np.empty(0, dtype=np.float32)])
    codes = np.concatenate([c[1] for c in chunks] or [np.empty(0, dtype=np.intp)])
    results = pd.DataFrame(
        {
            "row": table.rows,
            "request_id": table.request_ids,  # the caller's, when the file has them
            "probability_default": probabilities,
            "decision": pd.Categorical.from_codes(DECISION_OF_VERDICT[codes], DECISION_NAMES),
            "reasons": pd.Categorical.from_codes(codes, REASONS),
            "principal_reasons": [cell for chunk in chunks for cell in chunk[2]],
            "model_tag": model.tag,
        }
    )
    return results, pd.DataFrame(table.rejects, columns=["row", "field", "reason"])


def score_file(
    source: Path,
    output: Path,
    rejects_path: Path,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    explain_all: bool = False,
) -> BatchSummary:
    frame = read_table(source)
    results, rejects = score_frame(frame, model, thresholds, explain_all=explain_all)
    write_table(results, output)
    write_table(rejects, rejects_path)
    return BatchSummary(rows=len(frame), scored=len(results), rejected=rejects["row"].nunique())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.score", description=__doc__)
    parser.add_argument("input", type=Path, help="CSV or Parquet file of applications")
    parser.add_argument("output", type=Path, help="scored rows (.csv or .parquet)")
    parser.add_argument("--rejects", type=Path, help="refused rows (default: OUTPUT.rejects.csv)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--explain-all", action="store_true", help="principal reasons for every row"
    )
    args = parser.parse_args(argv)
    rejects = args.rejects or args.output.with_suffix(".rejects.csv")
    device = select_device(args.device)
    model = load_served_model(RegistrySettings(), device)
    summary = score_file(
        args.input, args.output, rejects, model, DecisionThresholds(), args.explain_all
    )
    print(
        f"rows={summary.rows} scored={summary.scored} rejected={summary.rejected} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
