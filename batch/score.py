"""Score a CSV or Parquet file offline with the served model, through the same contract,
features, torch scorer and business rules as the online path.

    python -m batch.score applications.csv scored.csv [--rejects rejects.csv]

Rows that break the contract do not fail the file: they go to the rejects file with the row
number, the field and the reason, and every other row is scored. ``python -m batch.distributed``
runs ``score_frame`` on pieces of larger inputs on a Dask cluster (docs/batch.md).
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
from credit_risk.reasons import ReasonCoder, ReasonPolicy
from credit_risk.table_contract import validate_table
from model_artifact.loaded_model import LoadedModel, load_served_model
from model_artifact.settings import DecisionSettings, ReasonSettings, RegistrySettings
from model_artifact.torch_scorer import select_device

# Input rows validated and scored together. It bounds memory on large files, and it fixes
# which rows share a model call: the network's float sums depend on the batch they run in (by
# up to 1.2e-7 here), so a job that cuts a file at multiples of it (batch/distributed.py)
# gives exactly the floats of this one.
BLOCK_ROWS = 8192
# Output columns as categoricals over the verdict table: no per-row strings are built.
DECISION_NAMES = list(dict.fromkeys(verdict.decision for verdict in VERDICTS))
DECISION_OF_VERDICT = np.array([DECISION_NAMES.index(verdict.decision) for verdict in VERDICTS])
REASONS = ["|".join(verdict.reasons) for verdict in VERDICTS]
REJECT_COLUMNS = ["row", "field", "reason"]  # one line per contract error of a refused row


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


def reason_coder(model: LoadedModel, reasons: ReasonPolicy | None) -> ReasonCoder | None:
    """Principal reasons come from the model as online, when it ships a baseline."""
    if model.bundle.baseline is None:
        return None
    return ReasonCoder(model.bundle.feature_params.feature_names, reasons or ReasonSettings())


def score_block(
    frame: pd.DataFrame,
    first_row: int,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    coder: ReasonCoder | None,
    explain_all: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, rejects) of at most ``BLOCK_ROWS`` input rows, the first numbered
    ``first_row``: contract, features, model, decision and reasons in one pass."""
    table = validate_table(frame)
    probabilities, codes, cells = score_chunk(table.raw, model, thresholds, coder, explain_all)
    results = pd.DataFrame(
        {
            "row": table.rows + first_row,
            "request_id": table.request_ids,  # the caller's, when the file has them
            "probability_default": probabilities,
            "decision": pd.Categorical.from_codes(DECISION_OF_VERDICT[codes], DECISION_NAMES),
            "reasons": pd.Categorical.from_codes(codes, REASONS),
            "principal_reasons": cells,
            "model_tag": model.tag,
        }
    )
    rejects = pd.DataFrame(table.rejects, columns=REJECT_COLUMNS).astype({"row": "int64"})
    rejects["row"] += first_row
    return results, rejects


def score_frame(
    frame: pd.DataFrame,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    reasons: ReasonPolicy | None = None,
    explain_all: bool = False,
    first_row: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, rejects) for a table whose first row is input row ``first_row``, scored
    ``BLOCK_ROWS`` input rows at a time. Principal reasons come from the model as online: for
    adverse decisions, or every row with ``explain_all``."""
    coder = reason_coder(model, reasons)
    blocks = [
        score_block(
            frame.iloc[start : start + BLOCK_ROWS],
            first_row + start,
            model,
            thresholds,
            coder,
            explain_all,
        )
        for start in range(0, max(len(frame), 1), BLOCK_ROWS)  # an empty table: one block
    ]
    results = pd.concat([block[0] for block in blocks], ignore_index=True)
    return results, pd.concat([block[1] for block in blocks], ignore_index=True)


def score_file(
    source: Path,
    output: Path,
    rejects_path: Path,
    model: LoadedModel,
    thresholds: DecisionThresholds,
    explain_all: bool = False,
    reasons: ReasonPolicy | None = None,
) -> BatchSummary:
    frame = read_table(source)
    results, rejects = score_frame(frame, model, thresholds, reasons, explain_all)
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
        args.input, args.output, rejects, model, DecisionSettings(), args.explain_all
    )
    print(
        f"rows={summary.rows} scored={summary.scored} rejected={summary.rejected} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
