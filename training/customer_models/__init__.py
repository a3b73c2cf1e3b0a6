"""The two customer-level models, churn and next best channel: their classifiers, the
labelled sets they learn from, the training job, metrics and the MLflow pyfunc wrapper."""
