"""The example HPO trainer: retrain a classifier on top of a frozen TF-Hub image module.

Trial contract: hyperparameters arrive in config.json (every command-line flag can be set
there), and each evaluation is appended to $RESULT_DIR/val_dict_list.json.
"""

__version__ = "0.1.0"
