"""Raw ad logs to model features: one definition for training (batch) and serving (one request)."""
