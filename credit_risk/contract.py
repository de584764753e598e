"""The input/output contract of the scoring API: what an upstream producer may send.

Strict on purpose: numbers must be JSON numbers (no "42" strings), integers must be integers,
NaN/inf are refused, unknown fields are refused, categories are closed enums, and every range
is codified from domain sense (wider than the training data, which the features clip to).
The contract version is logged with each model so promotion can refuse an incompatible one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

CONTRACT_VERSION = "1.0.0"
MAX_APPLICATIONS_PER_REQUEST = 256

Home = Literal["rent", "owner", "parents", "priv", "other", "ignore"]
Marital = Literal["single", "married", "widow", "separated", "divorced"]
Records = Literal["no", "yes"]
Job = Literal["fixed", "freelance", "partime", "others"]

CATEGORICAL_FIELDS: tuple[str, ...] = ("home", "marital", "records", "job")
NUMERIC_FIELDS: tuple[str, ...] = (
    "seniority",
    "time",
    "age",
    "expenses",
    "income",
    "assets",
    "debt",
    "amount",
    "price",
)
OPTIONAL_NUMERIC_FIELDS: tuple[str, ...] = ("income", "assets", "debt")
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]


class Application(BaseModel):
    """One credit application, in the data set's units (money in the lender's units)."""

    model_config = _STRICT

    request_id: RequestId | None = Field(
        None, description="Caller's id for joining outcomes later; generated when absent."
    )
    seniority: int = Field(ge=0, le=70, description="Years with the current employer.")
    home: Home | None = Field(None, description="Housing situation; null or absent when unknown.")
    time: int = Field(ge=1, le=120, description="Requested loan term in months.")
    age: int = Field(ge=18, le=100, description="Applicant age in years.")
    marital: Marital | None = Field(
        None, description="Marital status; null or absent when unknown."
    )
    records: Records = Field(description="Whether the applicant has prior default records.")
    job: Job | None = Field(None, description="Type of employment; null or absent when unknown.")
    expenses: float = Field(ge=0, le=10_000, description="Monthly expenses.")
    income: float | None = Field(None, ge=0, le=100_000, description="Monthly income.")
    assets: float | None = Field(None, ge=0, le=100_000_000, description="Total assets.")
    debt: float | None = Field(None, ge=0, le=100_000_000, description="Total debt.")
    amount: float = Field(gt=0, le=10_000_000, description="Requested loan amount.")
    price: float = Field(gt=0, le=100_000_000, description="Price of the financed good.")

    @model_validator(mode="after")
    def _consistent(self) -> Application:
        if self.seniority > self.age:
            raise ValueError("seniority (years employed) cannot exceed age")
        return self


# The data set's columns in its own order; ``request_id`` is an envelope field, not a feature.
CONTRACT_FIELDS: tuple[str, ...] = tuple(f for f in Application.model_fields if f != "request_id")


class ScoreRequest(BaseModel):
    """A batch of applications; each is scored and answered independently."""

    model_config = _STRICT

    applications: list[Application] = Field(min_length=1, max_length=MAX_APPLICATIONS_PER_REQUEST)


Decision = Literal["approve", "review", "decline"]


class PrincipalReason(BaseModel):
    """A contract field that raised this applicant's default probability, and by how much."""

    code: str = Field(description="The contract field, e.g. `income`.")
    contribution: float = Field(
        description="Its share of p(applicant) - p(reference applicant), in probability."
    )
    text: str = Field(description="Credit policy's wording for the code.")


class ScoreResult(BaseModel):
    """The answer for one application."""

    request_id: str
    probability_default: float
    decision: Decision
    reasons: list[str] = Field(description="The business rules' verdict: score band, policy.")
    principal_reasons: list[PrincipalReason] = Field(
        default_factory=list,
        description="For review and decline (or when asked): up to four fields that raised "
        "the default probability, largest first.",
    )
    model_tag: str
    contract_version: str = CONTRACT_VERSION


class ScoreResponse(BaseModel):
    results: list[ScoreResult]


class ErrorDetail(BaseModel):
    """One reason a request was refused: where (``loc``: a path into the body, ``[]`` for the
    body as a whole, or ``["header", name]``), what (``msg``), and a stable kind (``type``,
    pydantic's error types plus the request guard's), which the rejection metric counts."""

    model_config = ConfigDict(extra="allow")  # pydantic adds a link to its documentation

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every refused request: 4xx for bad input; 503 (with ``Retry-After``) when
    overloaded or the model stage is unavailable, listing no violation."""

    error: str = Field(description="A one-line summary.")
    detail: list[ErrorDetail] = Field(description="One entry per violation.")


def contract_document() -> dict[str, Any]:
    """Machine-readable contract, logged with every model and served at ``GET /contract``."""
    return {
        "version": CONTRACT_VERSION,
        "fields": list(CONTRACT_FIELDS),
        "max_applications_per_request": MAX_APPLICATIONS_PER_REQUEST,
        "application_schema": Application.model_json_schema(),
    }
