"""hpo-operator: hyperparameter optimization on Kubernetes, and locally with `hpo run`."""

__version__ = "0.1.0"
