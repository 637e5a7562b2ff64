"""The MLflow pyfunc face of a ModelBundle, logged "from code" (no pickle).

MLflow copies this file into the model and runs it on load; `set_model` at the bottom hands it
the model object. The bundle itself (LightGBM text, spec and calibrator JSON, meta) travels as
the artifact `features.bundle.BUNDLE_ARTIFACT` (`artifacts/bundle/` in a download). Input rows are
request dicts with the fields of features.schema.REQUEST_FIELDS (event_time as ISO-8601 text);
output is the calibrated probability per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from features.bundle import BUNDLE_ARTIFACT, ModelBundle
from training.records import frame_from_records, request_examples

__all__ = ["BidoptPyfunc", "frame_from_records", "request_examples"]


class BidoptPyfunc(PythonModel):
    """Calibrated probability per request row, straight from the bundle.

    The input is checked against the signature logged with the model (see tracking); MLflow's
    extra type-hint validation is switched off, as it only knows list[...] hints and would
    otherwise warn on every import of this class.
    """

    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        if hasattr(model_input, "to_dict"):
            records = model_input.to_dict(orient="records")
        else:
            records = list(model_input)
        return self.bundle.predict_frame(frame_from_records(records))


mlflow.models.set_model(BidoptPyfunc())
