"""A test trainer that follows the trial contract: config.json in, val_dict_list.json out.

accuracy = 1 - (x - 0.3)^2, reached over three evaluations; `sleep` seconds between them.
`TOY_FAIL_ABOVE`: exit 3 after the first evaluation when x is above it.
`TOY_BAD_X`: when x is this value, write a record whose accuracy is not a number, exit 0.
"""

import json
import os
import sys
import time

with open("config.json") as f:
    config = json.load(f)
with open(os.environ["HPO_CONFIG"]) as f:
    assert json.load(f) == config, "HPO_CONFIG and config.json differ"
x = float(config["x"])
sleep = float(os.environ.get("TOY_SLEEP", "0"))
fail_above = float(os.environ.get("TOY_FAIL_ABOVE", "2"))
bad_x = float(os.environ.get("TOY_BAD_X", "nan"))
out = os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json")
started = time.time()
records = []
for step in (10, 20, 30):
    time.sleep(sleep)
    accuracy = round((1 - (x - 0.3) ** 2) * step / 30, 6)
    records.append({"steps": step, "accuracy": "high" if x == bad_x else accuracy})
    with open(out + ".tmp", "w") as f:
        json.dump(records, f)
    os.replace(out + ".tmp", out)
    if x > fail_above:
        print("toy trainer: x too large", file=sys.stderr)
        sys.exit(3)
with open(os.path.join(os.environ["RESULT_DIR"], "times.json"), "w") as f:
    json.dump([started, time.time()], f)
print(f"toy trainer done: x={x} types={sorted(type(v).__name__ for v in config.values())}")
