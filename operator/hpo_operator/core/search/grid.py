"""Grid search: every point of the grid once, in a fixed order (the last parameter fastest).

Optuna's GridSampler visits the grid in a seeded random order; a user sweeping
`how_many_training_steps` expects 100, 200, 300, ... so this walks the grid in order. A point
already in the history (running, finished or failed) is not handed out again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..space import axis, grid_point, point_key
from ..spec import ExperimentSpec
from ..trial import Trial
from ._base import Suggestion


class Grid:
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion | None:
        params = spec.parameters
        tried = {point_key(params, t.parameters) for t in history}
        axes = [axis(p) for p in params]
        for position in range(math.prod(len(a) for a in axes)):
            point = grid_point(params, position, axes)
            if point_key(params, point) not in tried:
                return Suggestion(point, {"grid_position": position})
        return None


ALGORITHM = Grid()
