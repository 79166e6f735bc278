#!/usr/bin/env python3
"""A small trainer that follows the HPO trial contract, with the standard library only.

It fits a logistic-regression classifier by mini-batch SGD on a fixed synthetic data set
(two noisy Gaussian blobs in 20 dimensions) and evaluates on a held-out split every
`eval_step_interval` steps.

In:  config.json in the working directory (learning_rate, how_many_training_steps,
     batch_size, l2, eval_step_interval, seed; each optional).
Out: $RESULT_DIR/val_dict_list.json, rewritten atomically after every evaluation:
     [{"steps": 100, "accuracy": 0.81, "loss": 0.43}, ...]
"""

import json
import math
import os
import random

DEFAULTS = {
    "learning_rate": 0.1,
    "how_many_training_steps": 500,
    "batch_size": 16,
    "l2": 0.0,
    "eval_step_interval": 50,
    "seed": 0,
}
DIMENSIONS = 20


def make_data(n, rng):
    """Two classes whose means differ along every axis; noisy enough that accuracy < 1."""
    data = []
    for _ in range(n):
        label = rng.random() < 0.5
        shift = 0.25 if label else -0.25
        data.append(([rng.gauss(shift, 1.0) for _ in range(DIMENSIONS)], int(label)))
    return data


def predict(weights, bias, x):
    z = bias + sum(w * v for w, v in zip(weights, x))
    z = max(-30.0, min(30.0, z))
    return 1.0 / (1.0 + math.exp(-z))


def evaluate(weights, bias, data):
    loss = 0.0
    correct = 0
    for x, y in data:
        p = min(max(predict(weights, bias, x), 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += int((p >= 0.5) == bool(y))
    return correct / len(data), loss / len(data)


def write_atomically(path, records):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(records, f)
    os.replace(tmp, path)


def main():
    config = dict(DEFAULTS)
    if os.path.exists("config.json"):
        with open("config.json") as f:
            config.update(json.load(f))
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise SystemExit(f"config.json: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    data_rng = random.Random(1234)  # the data set is the same for every trial
    train, valid = make_data(600, data_rng), make_data(300, data_rng)
    rng = random.Random(config["seed"])
    weights, bias = [0.0] * DIMENSIONS, 0.0
    lr, l2 = float(config["learning_rate"]), float(config["l2"])
    steps, batch = int(config["how_many_training_steps"]), int(config["batch_size"])
    interval = int(config["eval_step_interval"])
    result_dir = os.environ.get("RESULT_DIR", ".")
    os.makedirs(result_dir, exist_ok=True)
    out = os.path.join(result_dir, "val_dict_list.json")
    records = []
    for step in range(1, steps + 1):
        grad_w, grad_b = [0.0] * DIMENSIONS, 0.0
        for x, y in rng.sample(train, batch):
            err = predict(weights, bias, x) - y
            grad_w = [g + err * v for g, v in zip(grad_w, x)]
            grad_b += err
        weights = [w - lr * (g / batch + l2 * w) for w, g in zip(weights, grad_w)]
        bias -= lr * grad_b / batch
        if step % interval == 0 or step == steps:
            accuracy, loss = evaluate(weights, bias, valid)
            records.append({"steps": step, "accuracy": round(accuracy, 4), "loss": round(loss, 5)})
            write_atomically(out, records)
    print(f"trained {steps} steps: accuracy {records[-1]['accuracy']}, loss {records[-1]['loss']}")


if __name__ == "__main__":
    main()
